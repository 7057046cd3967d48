"""Shared test settings.

The models in these tests are tiny, so every step is dominated by thread synchronisation: with
torch's and numba's default thread pools a 150-step epoch took 14 s on a busy 2-core machine and
0.2 s single-threaded. The suite therefore runs single-threaded; test_optim.py runs the numba
kernels once more with every thread, so that their parallel path is still covered.
"""
import numba
import torch

DEFAULT_NUMBA_THREADS = numba.config.NUMBA_NUM_THREADS

torch.set_num_threads(1)
numba.set_num_threads(1)
