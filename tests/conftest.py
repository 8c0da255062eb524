import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The unit tests' models are tiny: on one thread they run several times faster than on two
    contending ones, and reductions keep one order."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
