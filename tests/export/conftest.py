from __future__ import annotations

import pytest

from .support import datamodule, tiny_data


@pytest.fixture(scope="session")
def data_options(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def dm(data_options):
    return datamodule(data_options)
