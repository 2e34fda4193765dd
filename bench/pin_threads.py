"""Imported by the PyTorch side-by-side scripts before torch: their thread pools read these at start-up.

Debian's PyTorch sends GEMMs to OpenBLAS, whose pool ignores torch.set_num_threads, so `--threads N`
must reach OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) before torch loads; idle OpenMP threads must
sleep (OMP_WAIT_POLICY=PASSIVE), not spin against the timed ones. N comes from the command line's
--threads, else OMP_NUM_THREADS, else 2.
"""
import os
import sys

THREADS = (sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1]
           else os.environ.get("OMP_NUM_THREADS", "2"))
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = THREADS
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
