"""One torch thread for the analysis tests: they run many small tensor ops, which a second
thread only slows down on the shared CI cores (the CLI defaults to one thread too)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
