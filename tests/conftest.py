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
