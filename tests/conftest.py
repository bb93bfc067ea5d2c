"Fixtures shared by the test modules."
import pytest
from glamdebug.data import read_collection
from glamdebug.samples import digits_collection


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
    "`(folder, table)`: scikit-learn's digits as a 16 px collection, made once per test module (each its own folder and cache)"
    tmp = tmp_path_factory.mktemp('digits16')
    df = read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)
    return tmp, df


@pytest.fixture
def cli(capsys):
    """`run(*args, cwd=None)`: the `glamdebug` command run in this process through `glamdebug.cli.main`, returning a
    `subprocess.CompletedProcess` as `subprocess.run(..., capture_output=True, text=True)` would. A subprocess spends
    about 10 s importing torch and fastai before any work; `test_cli.py` runs the command as a real one."""
    import contextlib, subprocess
    from glamdebug.cli import main
    def run(*args, cwd=None):
        args = [str(a) for a in args]
        capsys.readouterr()
        with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
            try: rc = main(args)
            except SystemExit as e: rc = 0 if e.code is None else e.code if isinstance(e.code, int) else 1   # argparse: --help, usage errors
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(['glamdebug', *args], rc, out, err)
    return run
