"""The `glamdebug` command. Its entry point, help, a one-line error and the demo run as a user runs them, in a subprocess;
the rest through `glamdebug.cli.main` in this process (the `cli` fixture), as each subprocess spends about 10 s importing
torch and fastai before any work."""
import os, subprocess, sys
import pytest

ENV = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'), 'MPLBACKEND': 'Agg'}


def run(*args, timeout=600):
    return subprocess.run([sys.executable, '-m', 'glamdebug.cli', *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_help_lists_subcommands():
    r = run('--help')
    assert r.returncode == 0
    for c in ('demo', 'merge-labels'): assert c in r.stdout


def test_no_subcommand_is_usage_error(cli):
    r = cli()
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
    hist = out.split('epochs at 32 px…')[1].split('Error report')[0]   # piped: the epochs as one table, not fastai's raw lists
    assert hist.split()[:5] == ['train_loss', 'valid_loss', 'error_rate', 'accuracy', 'epoch'] and '[0, ' not in hist, hist
    # the "different scanner" split: what differs in its images (they are JPEGs where the others are PNGs)
    shift = out.split('Distribution shift: valid → test_shifted')[1]
    assert 'file_kb (lower on test_shifted' in shift and 'Diagnosis:' in shift
    # compared with a known result: the simplest models on the same valid items, with a verdict
    base = out.split('Simple baselines on valid')[1]
    assert 'logistic, 8 px' in base and any(v in base for v in ('better than every simple baseline', 'no better than', 'worse than a simple baseline'))
    # the error table has a number for every split, and the model learnt something (6 classes: chance is 83 % error)
    rows = {l.split()[0]: l.split() for l in out.split('Errors per split')[1].splitlines() if l.split() and l.split()[0] in ('train', 'valid', 'test', 'test_shifted')}
    assert set(rows) == {'train', 'valid', 'test', 'test_shifted'}
    assert float(rows['valid'][3]) < 0.5


def test_cache_command(tmp_path, cli):
    "`glamdebug cache`: builds the cache, names an unreadable image without failing, decodes nothing on a re-run"
    import json, shutil
    from pathlib import Path
    src = Path(__file__).parent.parent/'data'/'samples'
    coll = tmp_path/'coll'
    shutil.copytree(src/'images'/'valid', coll/'images'/'valid')
    lines = [l for l in (src/'collection.csv').read_text().splitlines() if l.startswith('fname') or ',valid' in l]
    (coll/'collection.csv').write_text('\n'.join(lines) + '\n')
    bad = coll/lines[1].split(',')[0]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    args = ('cache', str(coll), '--size', '32', '--cache-dir', str(tmp_path/'cache'))
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert f'{len(lines) - 2} images cached' in r.stdout and bad.name in r.stdout, r.stdout
    r2 = cli(*args, '--json')
    d = json.loads(r2.stdout)
    assert (d['decoded'], d['reused'], len(d['bad'])) == (0, len(lines) - 2, 1)
    r4 = cli(*args, '--srgb', '--json')                               # images decoded into sRGB: a cache of their own
    assert json.loads(r4.stdout)['decoded'] == len(lines) - 2 and list((tmp_path/'cache').glob('index-32x32-squish-draft-srgb.json'))
    r3 = cli('cache', str(tmp_path/'nowhere'))
    assert r3.returncode == 2 and 'nowhere' in r3.stderr


def test_tune_command(tmp_path, cli):
    "`glamdebug tune`: trials as JSON (baseline + trials × rounds), the best settings, a plot; bad input is one line, exit 2"
    import json
    from pathlib import Path
    coll = Path(__file__).parent.parent/'data'/'samples'
    png = tmp_path/'tune.png'
    r = cli('tune', str(coll), '--params', 'lr', 'schedule', '--trials', '2', '--rounds', '2', '--epochs', '1', '--size', '24',
            '--method', 'bayes', '--json', '--plot', str(png))
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout)
    assert d['method'] == 'bayes' and 'Bayesian' in d['title']
    assert len(d['table']) == 1 + 2*2 and set(d['best']) == {'lr', 'schedule'}
    assert d['table'][0]['valid_error'] <= min(t['valid_error'] for t in d['table'])
    assert png.stat().st_size > 1000
    # without --json: the report, then the command that tunes the medium settings from the best; that command runs
    r = cli('tune', str(coll), '--params', 'lr', 'schedule', '--trials', '2', '--rounds', '1', '--epochs', '1', '--size', '24')
    assert r.returncode == 0, r.stderr[-3000:]
    nxt = [l for l in r.stdout.splitlines() if l.startswith('Next, the medium settings from the best: ')]
    assert len(nxt) == 1, r.stdout[-2000:]
    import shlex
    cmd = shlex.split(nxt[0].split(': ', 1)[1])
    assert cmd[:2] == ['glamdebug', 'tune'] and '--base' in cmd and '--size' in cmd, cmd
    r3 = cli(*cmd[1:], '--json')
    assert r3.returncode == 0, r3.stderr[-3000:]
    d3 = json.loads(r3.stdout)
    assert set(d3['best']) == {'wd', 'drop_rate', 'depth'} and set(d3['base']) == {'lr', 'schedule'}, d3['best']
    for args, word in ((('--trials', '0'), '--trials'), (('--params', 'momentum'), 'momentum'),
                       (('--base', 'schedule=flat-cos'), 'flat-cos'), (('--base', 'lr'), 'NAME=VALUE')):
        r2 = cli('tune', str(coll), *args)
        err = [l for l in r2.stderr.splitlines() if l.strip()]
        assert r2.returncode == 2 and len(err) == 1 and word in err[0], r2.stderr


def test_keep_copies_command(tmp_path, cli):
    "`glamdebug keep-copies`: copies planted in valid and test move to train in the written CSV; input untouched, every column kept"
    import shutil
    from pathlib import Path
    import pandas as pd
    src = Path(__file__).parent.parent/'data'/'samples'
    coll = tmp_path/'coll'
    df = pd.read_csv(src/'collection.csv')
    df = df[df.split.isin(['train', 'valid'])].groupby(['split', 'label']).head(8).reset_index(drop=True)
    for f in df.fname: (coll/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy(src/f, coll/f)
    tr = df[df.split == 'train'].iloc[:3]
    copies = [dict(fname=f'images/copy{i}.png', label=r.label, split=('valid', 'test', 'valid')[i]) for i, r in enumerate(tr.itertuples())]
    for c, r in zip(copies, tr.itertuples()): shutil.copy(coll/r.fname, coll/c['fname'])
    table = pd.concat([df, pd.DataFrame(copies)], ignore_index=True).assign(note='kept')
    table.to_csv(coll/'collection.csv', index=False)
    before = (coll/'collection.csv').read_bytes()
    r = cli('keep-copies', str(coll), '-o', str(tmp_path/'fixed.csv'))
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'moved 3 of' in r.stdout and 'test → train: 1, valid → train: 2' in r.stdout, r.stdout
    assert 'different labels' not in r.stdout                               # the copies kept their class
    out = pd.read_csv(tmp_path/'fixed.csv')
    assert list(out.columns) == ['fname', 'label', 'split', 'note', 'split_original'] and len(out) == len(table)
    assert (out.split_original == table.split).all() and (out.note == 'kept').all()
    assert set(out.fname[out.split != out.split_original]) == {c['fname'] for c in copies}
    assert (coll/'collection.csv').read_bytes() == before
    r2 = cli('keep-copies', str(coll))                                      # no output given: refuses, one line, exit 2
    assert r2.returncode == 2 and '-o' in r2.stderr and (coll/'collection.csv').read_bytes() == before
    r3 = cli('keep-copies', str(coll), '-o', str(coll/'collection.csv'))  # the input as output without --overwrite
    assert r3.returncode == 2 and 'refusing to overwrite' in r3.stderr
    other = sorted(set(df.label) - {tr.label.iloc[0]})[0]                  # one copy catalogued under another class
    table.loc[table.fname == copies[0]['fname'], 'label'] = other
    table.to_csv(coll/'collection.csv', index=False)
    r4 = cli('keep-copies', str(coll), '-o', str(tmp_path/'fixed2.csv'))
    assert r4.returncode == 0 and '1 group of copies carries different labels' in r4.stdout, r4.stdout
    assert f"copy0.png ({other})" in r4.stdout and f"({tr.label.iloc[0]})" in r4.stdout
    assert (pd.read_csv(tmp_path/'fixed2.csv').label == table.label).all()  # reported, not changed


def test_bad_rows_stop_or_are_dropped_and_named(tmp_path, cli):
    "Bad rows stop every command with one line naming them and `--drop-bad`; with it they are dropped and named, and the annotated table still has every row"
    import json, shutil
    from pathlib import Path
    import pandas as pd
    src = Path(__file__).parent.parent/'data'/'samples'
    coll = tmp_path/'coll'
    shutil.copytree(src/'images', coll/'images')
    df = pd.read_csv(src/'collection.csv', dtype=str).assign(note=lambda d: [f'n{i}' for i in range(len(d))])
    tr = df.index[df.split == 'train']
    (coll/df.fname[tr[0]]).unlink()                                  # a missing file
    cut = coll/df.fname[tr[1]]; cut.write_bytes(cut.read_bytes()[:100])  # a truncated one
    df.loc[tr[2], 'label'] = None                                    # no label
    df.loc[tr[3], 'split'] = 'Valid '                                # a typo in the split
    df.to_csv(coll/'collection.csv', index=False)
    planted = [df.fname[i] for i in tr[:4]]
    model = ('--size', '16', '--bs', '64')
    r = cli('report', str(coll), '--epochs', '1', *model)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    for s in ('4 bad rows of 630', 'missing file', Path(planted[0]).name, 'unreadable image', Path(planted[1]).name,
              'empty label', "'Valid ' (did you mean 'valid'?)", '--drop-bad'): assert s in r.stderr, s
    r = cli('report', str(coll), '--epochs', '1', '--drop-bad', '--json', *model)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {e['split']: e['n'] for e in json.loads(r.stdout)['Errors']}['train'] == (df.split == 'train').sum() - 3  # 'Valid ' was not train
    assert 'dropped 4 bad rows' in r.stderr and all(f in r.stderr for f in planted), r.stderr
    r = cli('troubleshoot', str(coll), '--checks', 'labels,inputs', '--drop-bad', *model)   # a folder, like the other commands
    assert r.returncode == 0 and 'dropped 4 bad rows' in r.stderr, r.stderr[-2000:]
    out = tmp_path/'review.csv'
    r = cli('label-issues', str(coll), '--folds', '2', '--epochs', '1', '--drop-bad', '--splits', 'valid,test', '-o', str(out), *model)
    assert r.returncode == 0, r.stderr[-2000:]
    got = pd.read_csv(out, dtype=str)
    pd.testing.assert_frame_equal(got[df.columns], df)               # every row and column of the input, as it was
    judged = got.label_suspect.notna()
    assert not judged[got.fname.isin(planted)].any() and judged[got.split.isin(['train', 'valid', 'test'])].sum() == 540 - 4
    assert not judged[got.split == 'test_shifted'].any()            # not among --splits
    r = cli('cache', str(coll), '--size', '16', '--cache-dir', str(tmp_path/'cache'))   # the cache never stops on a bad row
    assert r.returncode == 0 and 'dropped 3 bad rows' in r.stderr and Path(planted[1]).name in r.stdout, (r.stdout, r.stderr)


def test_label_variants_warned_then_merged(tmp_path, cli):
    "A catalogue with 'Map' and 'map ' beside 'map': every command warns in one line naming them and the merge; `merge-labels --variants` unifies them, keeps the originals, and the warning is gone"
    import shutil
    from pathlib import Path
    import pandas as pd
    src = Path(__file__).parent.parent/'data'/'samples'
    coll = tmp_path/'coll'
    shutil.copytree(src/'images', coll/'images')
    df = pd.read_csv(src/'collection.csv', dtype=str)
    maps = df.index[df.label == 'map']
    df.loc[maps[::10], 'label'] = 'Map'; df.loc[maps[1::10], 'label'] = 'map '
    df.to_csv(coll/'collection.csv', index=False)
    r = cli('troubleshoot', str(coll), '--checks', 'labels', '--size', '16')
    assert r.returncode == 0, r.stderr[-2000:]
    warn = [l for l in r.stderr.splitlines() if 'warning' in l]
    assert len(warn) == 1 and "'map' (" in warn[0] and "'Map' (" in warn[0] and "'map ' (" in warn[0], r.stderr
    assert 'merge-labels' in warn[0] and '--variants' in warn[0]
    assert 'WARN' in r.stdout and 'written in more than one way' in r.stdout, r.stdout
    r = cli('merge-labels', str(coll), '--variants', '-o', str(coll/'merged.csv'))
    assert r.returncode == 0 and "Map -> map: 11 rows" in r.stdout and "map  -> map: 11 rows" in r.stdout, (r.stdout, r.stderr)
    got = pd.read_csv(coll/'merged.csv', dtype=str, keep_default_na=False)
    assert (got.label[maps] == 'map').all() and got.label_original.tolist() == df.label.tolist()
    r = cli('troubleshoot', str(coll/'merged.csv'), '--checks', 'labels', '--size', '16')
    assert r.returncode == 0 and 'warning' not in r.stderr and 'written in more than one way' not in r.stdout, (r.stdout, r.stderr)


def test_moved_folder_named(tmp_path, cli):
    "A box renamed on disk after the table was made: the command stops with one line that names where the files are and the folder change"
    import shutil
    from pathlib import Path
    import pandas as pd
    src = Path(__file__).parent.parent/'data'/'samples'
    coll = tmp_path/'coll'
    shutil.copytree(src/'images', coll/'images'); shutil.copy(src/'collection.csv', coll)
    (coll/'images'/'test_shifted').rename(coll/'images'/'shifted_2024')
    n = int((pd.read_csv(coll/'collection.csv').split == 'test_shifted').sum())
    r = cli('troubleshoot', str(coll), '--checks', 'labels', '--size', '16')
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert f'{n} missing files' in r.stderr and "(under images/shifted_2024/" in r.stderr, r.stderr[-2000:]
    assert f"{n} of the {n} missing files are under other folders of the collection: 'images/test_shifted/' → 'images/shifted_2024/' ({n})" in r.stderr


def test_table_from_class_folders(tmp_path, cli):
    "Split folders holding class folders (fastai's from_folder layout), no table: the command that needs one names `glamdebug table`, which writes it; the commands then read it"
    import shutil
    from pathlib import Path
    import pandas as pd
    src = Path(__file__).parent.parent/'data'/'samples'
    imgs = tmp_path/'images'
    shutil.copytree(src/'images', imgs)
    r = cli('troubleshoot', str(imgs), '--checks', 'labels', '--size', '16')
    assert r.returncode == 2 and f'`glamdebug table {imgs}` writes its table' in r.stderr, r.stderr[-2000:]
    r = cli('table', str(imgs))
    assert r.returncode == 0 and 'wrote' in r.stdout and '630 images, 6 classes' in r.stdout, (r.stdout, r.stderr)
    got, want = pd.read_csv(imgs/'collection.csv'), pd.read_csv(src/'collection.csv')
    assert sorted(zip('images/' + got.fname, got.label, got.split)) == sorted(zip(want.fname, want.label, want.split))
    r = cli('table', str(imgs))                                       # an existing table is never written over
    assert r.returncode == 2 and 'exists' in r.stderr and '--overwrite' in r.stderr, r.stderr
    r = cli('table', str(imgs), '-o', str(tmp_path/'collection.csv'))   # beside the folder: names relative to the table
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(tmp_path/'collection.csv').fname.str.startswith('images/').all()
    for where in (imgs, tmp_path):
        r = cli('troubleshoot', str(where), '--checks', 'labels', '--size', '16')
        assert r.returncode == 0 and '630 labels agree with their paths' in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])
    for s in ('train', 'valid'):                                        # a delivery box kept inside its class folder, in both splits
        (imgs/s/'map'/'box_2019').mkdir()
        for f in sorted((imgs/s/'map').glob('*.png'))[:4]: f.rename(imgs/s/'map'/'box_2019'/f.name)
    r = cli('table', str(imgs), '-o', str(tmp_path/'boxes.csv'))
    assert r.returncode == 0 and '1 box inside class folders, in column box (1 with images in more than one split' in r.stdout, r.stdout
    got = pd.read_csv(tmp_path/'boxes.csv')
    assert (got.box == 'map/box_2019').sum() == 8 and got.box.isna().sum() == 622 and (got.label[got.box.notna()] == 'map').all()


def test_split_whole_groups(tmp_path, cli):
    "A table without a split (a catalogue export): the commands name `glamdebug split`, which draws one, within classes and whole volumes at a time, and never writes over its input unasked; drawn again, the first split stays in split_original"
    import shutil
    from pathlib import Path
    import numpy as np, pandas as pd
    src = Path(__file__).parent.parent/'data'/'samples'
    shutil.copytree(src/'images', tmp_path/'images')
    want = pd.read_csv(src/'collection.csv')
    t = want.drop(columns='split').assign(volume=np.random.default_rng(0).permutation(len(want)) // 6)
    t.to_csv(tmp_path/'collection.csv', index=False)
    r = cli('troubleshoot', tmp_path, '--checks', 'labels', '--size', '16')
    assert r.returncode == 2 and "no column 'split'" in r.stderr and 'glamdebug split TABLE -o OUT' in r.stderr, r.stderr[-2000:]
    r = cli('split', tmp_path, '--group', 'volume')
    assert r.returncode == 2 and '-o' in r.stderr and '--overwrite' in r.stderr, r.stderr
    r = cli('split', tmp_path, '--group', 'folder', '-o', tmp_path/'split.csv')
    assert r.returncode == 2 and "no column 'folder'" in r.stderr, r.stderr
    r = cli('split', tmp_path, '--group', 'volume', '--test-pct', '0.1', '-o', tmp_path/'split.csv')
    assert r.returncode == 0 and 'wrote' in r.stdout and '105 volume groups' in r.stdout, (r.stdout, r.stderr)
    got = pd.read_csv(tmp_path/'split.csv')
    assert got.drop(columns='split').equals(t) and set(got.split) == {'train', 'valid', 'test'}
    assert (got.groupby('volume').split.nunique() == 1).all()                     # each volume in one split
    share = got.split.value_counts(normalize=True)
    assert abs(share['valid'] - 0.2) < 0.03 and abs(share['test'] - 0.1) < 0.03, share
    r = cli('split', tmp_path/'split.csv', '--overwrite', '--seed', '1', '--group', 'volume')   # drawn again: test kept, the first split kept
    assert r.returncode == 0 and f"test {(got.split == 'test').sum()} (kept)" in r.stdout, (r.stdout, r.stderr)
    again = pd.read_csv(tmp_path/'split.csv')
    assert again.split_original.tolist() == got.split.tolist() and again.split[got.split == 'test'].eq('test').all()
    assert again.split.tolist() != got.split.tolist()
    r = cli('troubleshoot', tmp_path/'split.csv', '--checks', 'labels,leakage', '--group', 'volume', '--size', '16')
    assert r.returncode == 0 and '630 labels agree with their paths' in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])
    assert 'nor a volume in train and in another split' in r.stdout, r.stdout[-2000:]
    assert cli('split', tmp_path, '-o', tmp_path/'rows.csv').returncode == 0     # drawn page by page: the leakage check names the volumes
    r = cli('troubleshoot', tmp_path/'rows.csv', '--checks', 'leakage', '--group', 'volume', '--size', '16')
    assert r.returncode == 0 and 'valid/test items are in a volume that train also holds' in r.stdout and 'split --group volume' in r.stdout, r.stdout[-2000:]
