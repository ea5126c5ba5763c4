# dunk bug reproducer (docs/compat/cpython.md, test_concurrent_futures):
# CPython's ThreadPoolExecutorTest.test_hang_global_shutdown_lock on its own.
# A thread keeps submitting work while the main thread starts and shuts down
# a one-process ProcessPoolExecutor (fork context: fork() from a
# multithreaded process) 50 times. Natively: about 13 s in the test VM.
# Under dunk exec it hangs. Run: dunk exec -- python3.11 fork_pool_hang.py
import concurrent.futures as futures
import multiprocessing as mp
import time


def submit(pool):
    pool.submit(submit, pool)


start = time.monotonic()
with futures.ThreadPoolExecutor(1) as pool:
    pool.submit(submit, pool)
    for i in range(50):
        with futures.ProcessPoolExecutor(1, mp_context=mp.get_context("fork")) as workers:
            workers.submit(tuple)
        print(f"round {i} done at {time.monotonic() - start:.1f} s", flush=True)
print("finished", flush=True)
