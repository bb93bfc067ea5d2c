"Tests of `glamdebug.merge` that notebooks do badly: the `glamdebug merge-labels` command end to end (exit codes, messages, files)."
import os, json
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from fastcore.test import test_eq as t_eq, test_fail as t_fail, test_close as t_close
from glamdebug.core import GlamError
from glamdebug.merge import LabelMerge, merge_csv, default_group_name

LABELS = ['cover', 'blank', 'map', 'cover', 'text', 'blank', 'photo', 'drawing', 'cover', 'map']

def _collection(d:Path, name='collection.csv', label_col='label'):
    "A collection CSV with values pandas would reinterpret if it read them naively (leading zeros, NA, empty cells)"
    df = pd.DataFrame({'fname': [f'img/{i:03d}.png' for i in range(len(LABELS))], label_col: LABELS,
                       'split': ['train']*6 + ['valid']*2 + ['test']*2,
                       'shelfmark': ['007', 'NA', '', '1e3', 'x,y', '10', '0.50', 'nan', 'None', '12']})
    p = d/name
    df.to_csv(p, index=False)
    return p

def _error_line(r):
    "The error line of a failed run: one line, no traceback"
    assert 'Traceback' not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith('glamdebug')]
    assert len(lines) == 1, r.stderr
    return lines[0]

def _main(*args):
    "The same command in this process (through the real `main` and its parser): `(exit code)`"
    from glamdebug.cli import main
    return main(['merge-labels'] + [str(a) for a in args])

# ---------------------------------------------------------------- end to end

def test_cli_merges_and_keeps_input(tmp_path, cli):
    src = _collection(tmp_path); raw = src.read_bytes()
    out = tmp_path/'merged.csv'
    r = cli('merge-labels', src, '--merge', 'cover,blank=cover_or_blank', '-o', out, '--save', tmp_path/'m.json')
    assert r.returncode == 0, r.stderr
    assert 'cover -> cover_or_blank: 3 rows' in r.stdout and 'blank -> cover_or_blank: 2 rows' in r.stdout, r.stdout
    assert 'relabelled 5 of 10 rows (6 labels -> 5)' in r.stdout, r.stdout
    t_eq(src.read_bytes(), raw)
    res = pd.read_csv(out, dtype=str, keep_default_na=False)
    orig = pd.read_csv(src, dtype=str, keep_default_na=False)
    t_eq(res.label.tolist(), [{'cover': 'cover_or_blank', 'blank': 'cover_or_blank'}.get(l, l) for l in LABELS])
    t_eq(res.label_original.tolist(), LABELS)
    # every other column written back exactly as it was (no NA/float reinterpretation)
    pd.testing.assert_frame_equal(res.drop(columns=['label', 'label_original']), orig.drop(columns=['label']))
    t_eq(sorted(os.listdir(tmp_path)), ['collection.csv', 'm.json', 'merged.csv'])  # no temp files left
    saved = json.loads((tmp_path/'m.json').read_text())
    t_eq(saved['mapping'], {'cover': 'cover_or_blank', 'blank': 'cover_or_blank'})
    assert {'created', 'glamdebug_version', 'source'} <= set(saved['provenance'])

def test_cli_errors_exit_2_input_untouched(tmp_path, cli):
    src = _collection(tmp_path); raw = src.read_bytes()
    # writing over the input without --overwrite (also through another spelling of the same path)
    r = cli('merge-labels', 'collection.csv', '--merge', 'cover,blank', '-o', './collection.csv', cwd=tmp_path)
    t_eq(r.returncode, 2)
    assert 'refusing to overwrite' in _error_line(r)
    t_eq(src.read_bytes(), raw)
    t_eq(sorted(os.listdir(tmp_path)), ['collection.csv'])

# ---------------------------------------------------------------- the same parser and main(), in this process

def test_main_bad_inputs(tmp_path, capsys):
    src = _collection(tmp_path); raw = src.read_bytes()
    bad = tmp_path/'bad.csv'; bad.write_bytes(b'fname,label\n"a.png,cover\nb.png,blank\n')  # unclosed quote
    bin_ = tmp_path/'bin.csv'; bin_.write_bytes(bytes(range(256))*4)
    empty = tmp_path/'empty.csv'; empty.write_bytes(b'')
    cases = [((bad, '--merge', 'cover,blank', '-o', tmp_path/'o.csv'), 'bad.csv'),
             ((bin_, '--merge', 'cover,blank', '-o', tmp_path/'o.csv'), 'bin.csv'),
             ((empty, '--merge', 'cover,blank', '-o', tmp_path/'o.csv'), 'empty.csv'),
             ((tmp_path/'missing.csv', '--merge', 'cover,blank', '-o', tmp_path/'o.csv'), 'missing.csv'),
             ((src, '--merge', 'cover,blank', '-o', tmp_path/'o.csv', '--label-col', 'class'), "no label column 'class'"),
             ((src, '--merge', 'cover', '-o', tmp_path/'o.csv'), 'bad --merge'),
             ((src, '--merge', 'cover,blank', '--merge', 'blank,map', '-o', tmp_path/'o.csv'), 'two merge groups'),
             ((src, '--merge', 'cover,blank'), '--overwrite'),
             ((src, '-o', tmp_path/'o.csv'), 'nothing to merge'),
             ((src, '--undo', '-o', tmp_path/'o.csv'), 'nothing to undo'),
             ((src, '--from', tmp_path/'nope.json', '-o', tmp_path/'o.csv'), 'nope.json'),
             ((src, '--merge', 'cover=blank', '--from', tmp_path/'m.json', '-o', tmp_path/'o.csv'), 'not --merge and --from'),
             ((src, '--variants', '--undo', '-o', tmp_path/'o.csv'), 'without --variants'),
             ((src, '--plurals', '-o', tmp_path/'o.csv'), '--plurals goes with --variants'),
             ((src, '--variants', '--label-col', 'class', '-o', tmp_path/'o.csv'), "no label column 'class'")]
    for args, msg in cases:
        t_eq(_main(*args), 2)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith('glamdebug merge-labels: error:') and msg in err, (args, err)
    t_eq(_main(src, '--merge', 'cover,blnk', '-o', tmp_path/'o.csv'), 2)
    err = capsys.readouterr().err
    assert "'blnk'" in err and 'collection.csv' in err, err
    (tmp_path/'cyc.json').write_text('{"cover": "blank", "blank": "cover"}')
    t_eq(_main(src, '--from', tmp_path/'cyc.json', '-o', tmp_path/'o.csv'), 2)
    assert 'cover -> blank -> cover' in capsys.readouterr().err
    t_eq(src.read_bytes(), raw)
    assert not (tmp_path/'o.csv').exists()

def test_main_from_json_label_col_overwrite_undo(tmp_path, capsys):
    src = _collection(tmp_path, label_col='genre'); raw = src.read_bytes()
    LabelMerge.from_groups([['photo', 'drawing'], ['cover', 'blank']], names=['picture', None]).save(tmp_path/'m.json')
    t_eq(_main(src, '--from', tmp_path/'m.json', '--label-col', 'genre', '-o', tmp_path/'a.csv'), 0)
    out = capsys.readouterr().out
    assert 'photo -> picture: 1 rows' in out and 'cover -> blank_or_cover: 3 rows' in out, out
    a = pd.read_csv(tmp_path/'a.csv', dtype=str, keep_default_na=False)
    t_eq(a.genre.tolist()[6:8], ['picture', 'picture'])
    t_eq(a.label_original.tolist(), LABELS)
    # applying twice equals applying once, and the first originals are kept
    t_eq(_main(tmp_path/'a.csv', '--from', tmp_path/'m.json', '--label-col', 'genre', '-o', tmp_path/'b.csv'), 0)
    t_eq((tmp_path/'b.csv').read_bytes(), (tmp_path/'a.csv').read_bytes())
    assert 'relabelled 0 of 10 rows' in capsys.readouterr().out
    # --overwrite writes in place; --undo gives back the original bytes (pandas wrote both)
    t_eq(_main(tmp_path/'b.csv', '--merge', 'map,text=printed', '--label-col', 'genre', '--overwrite'), 0)
    b = pd.read_csv(tmp_path/'b.csv', dtype=str, keep_default_na=False)
    t_eq(b.genre.tolist()[2], 'printed'); t_eq(b.label_original.tolist(), LABELS)
    capsys.readouterr()
    t_eq(_main(tmp_path/'b.csv', '--undo', '--label-col', 'genre', '-o', tmp_path/'restored.csv'), 0)
    assert 'restored 10 of 10 rows' in capsys.readouterr().out
    t_eq((tmp_path/'restored.csv').read_bytes(), raw)

# ---------------------------------------------------------------- the Python API on realistic frames

def test_apply_undo_exact_dtypes():
    base = pd.DataFrame({'fname': [f'{i}.png' for i in range(6)], 'n': np.arange(6, dtype='int32')})
    frames = {'str': base.assign(label=pd.Series(['a', 'b', None, 'c', 'a', 'b'], dtype='str')),
              'object': base.assign(label=pd.Series(['a', 'b', None, 'c', 'a', 'b'], dtype=object)),
              'category': base.assign(label=pd.Categorical(['a', 'b', 'c', 'c', 'a', 'b'])),
              'int': base.assign(label=np.array([1, 2, 3, 3, 1, 2]))}
    for kind, df in frames.items():
        before = df.copy()
        m = LabelMerge({'a': 'ab', 'b': 'ab'}) if kind != 'int' else LabelMerge.from_groups([[1, 2]])
        merged = m.apply(df)
        pd.testing.assert_frame_equal(df, before)
        pd.testing.assert_frame_equal(m.apply(merged), merged)
        pd.testing.assert_frame_equal(m.undo(merged), df)
        t_eq(merged.label.isna().sum(), df.label.isna().sum())
        t_eq(int((merged.label.astype(object).fillna('#').astype(str) != merged.label_original.astype(object).fillna('#').astype(str)).sum()), 4)
    t_eq(LabelMerge.from_groups([[1, 2]]).apply(frames['int']).label.tolist(), ['1_or_2', '1_or_2', '3', '3', '1_or_2', '1_or_2'])

def test_from_suggestions_on_real_confusions():
    "Plant a confusion between two digit classes and check the suggested merge finds it, and only it"
    from glamdebug.interpret import GlamInterpretation, suggest_merges
    vocab = [str(i) for i in range(10)]
    rng = np.random.default_rng(0)
    targs = np.repeat(np.arange(10), 50)
    preds = targs.copy()
    for a, b in [(3, 5), (5, 3)]: preds[rng.choice(np.where(targs == a)[0], 15, replace=False)] = b
    noise = rng.choice(len(targs), 10, replace=False); preds[noise] = (targs[noise] + 1 + rng.integers(0, 8, 10)) % 10
    noise = noise[(targs[noise] != 3) & (targs[noise] != 5)]
    probs = np.full((len(targs), 10), .01); probs[np.arange(len(targs)), preds] = .91
    interp = GlamInterpretation.from_preds(probs, targs, vocab)
    sugg = suggest_merges(interp, min_rate=0.05)
    m = LabelMerge.from_suggestions(sugg, top=1)
    t_eq(m.mapping, {'3': '3_or_5', '5': '3_or_5'})
    # the merged error is what the probabilities say: only the errors outside {3, 5}
    mp, mv = m.apply_preds(torch.tensor(probs), vocab)
    mt = m.apply_targs(torch.tensor(targs), vocab)
    err = (mp.argmax(1) != mt).float().mean().item()
    t_close(m.merged_error(interp), err)
    t_close(err, ((preds != targs) & ~(np.isin(targs, [3, 5]) & np.isin(preds, [3, 5]))).mean())
    t_eq(len(mv), 9)
    # no false alarm: without the planted confusion there is nothing to merge
    clean = np.full((len(targs), 10), .01); clean[np.arange(len(targs)), targs] = .91
    t_fail(lambda: LabelMerge.from_suggestions(suggest_merges(GlamInterpretation.from_preds(clean, targs, vocab))),
           contains='nothing to merge')

def test_merge_csv_function(tmp_path):
    src = _collection(tmp_path)
    m = LabelMerge({'blank': 'cover'})
    res, rel = merge_csv(src, m, tmp_path/'o.csv')
    t_eq(rel.to_dict('records'), [dict(label='blank', merged_into='cover', rows=2)])
    t_eq(res.label.tolist().count('cover'), 5)
    with pytest.raises(GlamError, match='refusing'): merge_csv(src, m)
    t_eq(default_group_name(['photo', 'drawing']), 'drawing_or_photo')
