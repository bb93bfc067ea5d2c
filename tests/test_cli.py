"The `glamdebug` command, run as a user runs it: a subprocess."
import os, subprocess, sys
import pytest

ENV = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'), 'MPLBACKEND': 'Agg'}


def run(*args, timeout=600):
    return subprocess.run([sys.executable, '-m', 'glamdebug.cli', *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_help_lists_subcommands():
    r = run('--help')
    assert r.returncode == 0
    for c in ('demo', 'merge-labels'): assert c in r.stdout


def test_no_subcommand_is_usage_error():
    r = run()
    assert r.returncode == 2 and 'usage: glamdebug' in r.stdout


def test_bad_path_one_line_exit_2(tmp_path):
    r = run('demo', '--path', str(tmp_path/'nowhere'))
    assert r.returncode == 2
    err = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(err) == 1 and 'error' in err[0] and 'nowhere' in err[0], r.stderr


def test_demo_end_to_end():
    r = run('demo')
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    for s in ('Collection', 'Errors per split', 'train', 'valid', 'test', 'test_shifted', 'done in'): assert s in out, s
    # the error table has a number for every split, and the model learnt something (6 classes: chance is 83 % error)
    rows = {l.split()[0]: l.split() for l in out.split('Errors per split')[1].splitlines() if l.split() and l.split()[0] in ('train', 'valid', 'test', 'test_shifted')}
    assert set(rows) == {'train', 'valid', 'test', 'test_shifted'}
    assert float(rows['valid'][3]) < 0.5
