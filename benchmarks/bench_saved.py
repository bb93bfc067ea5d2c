"""CPU benchmark for a saved model put back on a table: `learn.export_model` / `load_model(fname, df)` against plain
fastai's `learn.export` / `load_learner` and loaders rebuilt from the table, side by side in one run, as ratios.

1. What the check catches. The version-zero LeNet trained to memorise 150 of scikit-learn's digits (16 px, 60 epochs),
   and, when ../shared/data/oracle-mnist is there, 600 of its real scans (28 px): the table then re-split (a share of
   the training items moved into valid), a class dropped, the validation files re-delivered as negatives. For each,
   the valid error plain fastai reports, the error glamdebug reports on the items the model never saw, and what the
   check says. Two more where names do not tell: the whole table renamed (numbered files) and re-split, and a quarter
   of the training items delivered again into valid under new names (half the same bytes, half re-encoded 3 grey
   levels darker), which the check finds only by content (`model_check(content=True)`).
2. Cost, as the table grows (1,000 to 100,000 rows, files linked to the sample collection's images): export (time,
   file size), load onto the table (plain: `load_learner` + `collection_dls(df, vocab=...)`; glamdebug: `load_model`
   with its check, which reads at most 500 validation images once, and without it). `export_model` keeps each training
   item's fingerprint (MD5, difference hash, 8×8 thumbnail; `fingerprints=False` does not), and the check by content
   reads every file the manifest does not name.
3. A learner of this session (no file) checked twice by content: what it was trained on is made once for its weights
   and loaders, where each check made it anew before; the image hashes are remembered for the session by file, size and
   mtime, where each check read every file again before.
4. The answers check: how far the answers kept at export move when the validation files are changed after export in
   ways that keep the image (saved again, re-encoded, scanned again) and ways that do not (a negative, other files),
   and under bfloat16 inference; what the check says of each.
`python benchmarks/bench_saved.py`; writes benchmarks/results/saved.txt (`... bench_saved.py session` or `answers`:
section 3 or 4 alone, results/saved_session.txt or saved_answers.txt).
"""
import os, time, tempfile, warnings, shutil
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image, ImageOps
warnings.filterwarnings('ignore')
import torch
from fastai.vision.all import set_seed, load_learner, Callback
from glamdebug.data import read_collection, collection_dls
from glamdebug.samples import digits_collection, sample_collection
from glamdebug.models import defaults_learner
from glamdebug.saved import load_model, ModelCheck
from glamdebug.debug import _HASHES

from common import say, header, save
from oracle_merge import ORACLE, oracle_collection


def memorised(df, size, n_train, epochs=60, seed=0):
    "A LeNet trained (Adam 1e-3) on `n_train` training items of `df` until it knows them; the table it was trained on"
    tr = df.index[df.split == 'train']
    keep = np.random.default_rng(seed).choice(tr, n_train, replace=False)
    small = df[(df.split != 'train') | df.index.isin(keep)]
    small.attrs = df.attrs
    set_seed(seed, reproducible=True)
    learn = defaults_learner(collection_dls(small, size=size, bs=32), lr=1e-3)
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs)
    return learn, small


def plain_error(fn, df, size):
    "Plain fastai: load the export, rebuild the loaders from the table, `validate()`'s error rate"
    learn = load_learner(fn)
    learn.dls = collection_dls(df, size=size, bs=64)
    with learn.no_bar(): return float(learn.validate()[1])


def catches(name, df, size, n_train, tmp):
    learn, small = memorised(df, size, n_train)
    fn = learn.export_model(tmp/f'{name}.pkl', overwrite=True)
    with learn.no_bar(): tr, va = learn.get_split_preds('train').error, learn.get_split_preds('valid').error
    say(f'\n## {name}: {n_train} training items, {len(small[small.split == "valid"])} valid; train error {tr:.1%}, valid {va:.1%}')
    say('| table since training | plain fastai valid error | glamdebug: on items never trained on | the check says |')
    say('| --- | --- | --- | --- |')
    rng = np.random.default_rng(1)
    for share in (0.25, 0.5):
        moved = rng.choice(small.index[small.split == 'train'], int(share*n_train), replace=False)
        t = small.copy(); t.loc[moved, 'split'] = 'valid'
        e_plain = plain_error(fn, t, size)
        c = load_model(fn, t, progress=False).model_check(progress=False)
        r = c.per_split.loc['valid']
        say(f'| re-split: {len(moved)} training items moved into valid | {e_plain:.1%} | {r.error_new:.1%} '
            f'(on the moved: {r.error_trained_on:.1%}) | {len(c.leaked)} held-out items were training items |')
    drop = sorted(small.label.unique())[0]
    t = small[small.label != drop]; t.attrs = small.attrs
    e_plain = plain_error(fn, t, size)
    l2 = load_model(fn, t, progress=False)
    with l2.no_bar(): e_ours = l2.get_split_preds('valid').error
    say(f'| class {drop!r} dropped from the table | {e_plain:.1%} | {e_ours:.1%} (the trained model on those items) | '
        f'its classes kept in the model\'s order; {drop!r} has no item |')
    redo = tmp/f'{name}_redelivered'
    if redo.exists(): shutil.rmtree(redo)
    root = Path(small.attrs['path'])
    shutil.copytree(root, redo)
    for f in small[small.split == 'valid'].fname: ImageOps.invert(Image.open(redo/f).convert('RGB')).save(redo/f)
    t = small.copy(); t.attrs = dict(small.attrs, path=redo)
    e_plain = plain_error(fn, t, size)
    c = load_model(fn, t, progress=False).model_check(progress=False)
    say(f'| valid files re-delivered as negatives, same names | {e_plain:.1%} | — | {len(c.changed)} of {len(c.answers)} '
        f'answers differ from export (median confidence change {c.answers.confidence_change.median():.2f}) |')
    moved = rng.choice(small.index[small.split == 'train'], int(0.25*n_train), replace=False)
    flat = tmp/f'{name}_renamed'
    flat.mkdir(exist_ok=True)
    names = [f'{i:05d}.png' for i in range(len(small))]
    for n, f in zip(names, small.fname):
        if not (flat/n).exists(): os.symlink(root/f, flat/n)
    t = small.assign(fname=names); t.loc[moved, 'split'] = 'valid'; t.attrs = dict(small.attrs, path=flat)
    e_plain = plain_error(fn, t, size)
    c = load_model(fn, t, check=False).model_check(progress=False)
    r = c.per_split.loc['valid']
    say(f'| every file renamed, and re-split: {len(moved)} training items moved into valid | {e_plain:.1%} | {r.error_new:.1%} '
        f'(on the moved: {r.error_trained_on:.1%}) | no name matches, so by content ({c.content["read"]:,} files, '
        f'{c.content["seconds"]:.1f} s): {len(c.leaked)} held-out items were training items |')
    again = tmp/f'{name}_again'
    again.mkdir(exist_ok=True)
    src, rows = small[small.split == 'train'].sample(int(0.25*n_train), random_state=2), []
    for i, (f, lab) in enumerate(zip(src.fname, src.label)):
        new = again/f'new_{i:05d}.png'
        if i < len(src)//2: shutil.copy(root/f, new)
        else: Image.fromarray(np.clip(np.asarray(Image.open(root/f)).astype(int) - 3, 0, 255).astype(np.uint8)).save(new)
        rows.append((str(new), lab, 'valid'))
    t = pd.concat([small, pd.DataFrame(rows, columns=['fname', 'label', 'split'])], ignore_index=True); t.attrs = small.attrs
    e_plain = plain_error(fn, t, size)
    l = load_model(fn, t, check=False)
    c0, c = l.model_check(progress=False), l.model_check(content=True, progress=False)
    r = c.per_split.loc['valid']
    say(f'| {len(src)} training items delivered again into valid under new names ({len(src)//2} same bytes, the rest '
        f're-encoded darker) | {e_plain:.1%} | {r.error_new:.1%} (on the copies: {r.error_trained_on:.1%}) | by name: '
        f'{len(c0.leaked)}; by content ({c.content["read"]:,} files, {c.content["seconds"]:.1f} s): {len(c.leaked)} '
        f'({(c.leaked.match == "same bytes").sum()} same bytes, {(c.leaked.match == "near copy").sum()} near copies) |')


def cost(tmp):
    say('\n## Cost as the table grows (sample collection images linked under new names; LeNet at 32 px; one run each)')
    say('(each of the 630 images is linked about n/630 times, so by content every held-out item is a copy of a training item: the worst case for tying them)')
    say('| table rows | train items | plain export | export_model, fingerprints=False | export_model | file size: plain, no fingerprints, glamdebug | '
        'plain load + rebuild | load_model, no check | with check (names) | ratio | with check by content (of which reading the files and tying them) | ratio |')
    say('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    base = read_collection(sample_collection()/'collection.csv', progress=False)
    for n in (1_000, 10_000, 100_000):
        d = tmp/f'n{n}'
        df = linked_table(base, d, n)
        set_seed(0)
        learn = defaults_learner(collection_dls(df, size=32, bs=64))   # untrained: the weights do not matter here
        t0 = time.perf_counter(); learn.export(d/'plain.pkl'); t_plain = time.perf_counter() - t0
        t0 = time.perf_counter(); learn.export_model(d/'nofp.pkl', overwrite=True, fingerprints=False); t_nofp = time.perf_counter() - t0
        t0 = time.perf_counter(); learn.export_model(d/'glam.pkl', overwrite=True); t_glam = time.perf_counter() - t0
        s_plain, s_nofp, s_glam = [(d/f).stat().st_size/1e6 for f in ('plain.pkl', 'nofp.pkl', 'glam.pkl')]
        t0 = time.perf_counter()
        pl = load_learner(d/'plain.pkl'); pl.dls = collection_dls(df, size=32, bs=64, vocab=list(pl.dls.vocab))
        l_plain = time.perf_counter() - t0
        t0 = time.perf_counter(); load_model(d/'glam.pkl', df, check=False); l_none = time.perf_counter() - t0
        t0 = time.perf_counter(); load_model(d/'glam.pkl', df, progress=False); l_glam = time.perf_counter() - t0
        t0 = time.perf_counter(); c = load_model(d/'glam.pkl', df, check=False).model_check(content=True, progress=False); l_content = time.perf_counter() - t0
        say(f'| {n:,} | {int(0.7*n):,} | {t_plain:.2f} s | {t_nofp:.2f} s | {t_glam:.2f} s | {s_plain:.2f}, {s_nofp:.2f}, {s_glam:.2f} MB | '
            f'{l_plain:.2f} s | {l_none:.2f} s | {l_glam:.2f} s | {l_glam/l_plain:.1f}× | {l_content:.2f} s ({c.content["read"]:,} files read and tied in {c.content["seconds"]:.1f} s) | {l_content/l_plain:.0f}× |')


def linked_table(base, d, n):
    "`n` rows linked to the images of `base` under new names in `d` (70 % train, 15 % valid, 15 % test)"
    src = [Path(base.attrs['path'])/f for f in base.fname]
    (d/'img').mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        j = i % len(base)
        f = d/'img'/f'{i:06d}.png'
        if not f.exists(): os.symlink(src[j], f)
        rows.append((f'img/{i:06d}.png', base.label.iloc[j], 'train' if i < 0.7*n else 'valid' if i < 0.85*n else 'test'))
    df = pd.DataFrame(rows, columns=['fname', 'label', 'split'])
    df.attrs = dict(path=d)
    return df


def session(tmp):
    "A learner of this session (no file) checked twice by content: what it was trained on made anew each time, as before it was cached, and made once"
    say('\n## A learner of this session checked again: `learn.model_check(content=True)` twice (sample images linked under new names; LeNet at 32 px, untrained)')
    say('(the first check makes what the model was trained on: the answers on up to 500 validation items and a read of every training image; '
        '"made anew" drops it before each check, as every check did before it was cached by weights and loaders)')
    say('(image hashes: "read again" forgets the hashes the session remembers by file, size and mtime before the check, so that '
        'every file is read again by content, as every check did before they were remembered)')
    say('| table rows | train items | first check | second: made anew, read again | second: cached, read again | second: cached, hashes remembered | ratio to made anew | ratio to read again |')
    say('| --- | --- | --- | --- | --- | --- | --- | --- |')
    base = read_collection(sample_collection()/'collection.csv', progress=False)
    for n in (1_000, 10_000, 30_000):
        df = linked_table(base, tmp/f's{n}', n)
        set_seed(0)
        learn = defaults_learner(collection_dls(df, size=32, bs=64))
        ts = []
        for anew, forget in ((None, True), (True, True), (False, True), (False, False)):
            if anew: learn.__dict__.pop('_glam_manifest', None)
            if forget: _HASHES.clear()
            t0 = time.perf_counter(); learn.model_check(content=True, progress=False); ts.append(time.perf_counter() - t0)
        say(f'| {n:,} | {int(0.7*n):,} | {ts[0]:.2f} s | {ts[1]:.2f} s | {ts[2]:.2f} s | {ts[3]:.2f} s | {ts[1]/ts[3]:.1f}× | {ts[2]/ts[3]:.1f}× |')


class CPUbf16(Callback):
    "fastai's `MixedPrecision(amp_mode='bf16')` on the CPU: the forward pass under bfloat16 autocast, its output cast to float32"
    order = 10
    def before_batch(self): self.ac = torch.autocast('cpu', dtype=torch.bfloat16); self.ac.__enter__()
    def after_pred(self): self.learn.pred = self.pred.float()
    def after_loss(self): self.ac.__exit__(None, None, None)


def _variants():
    "What may happen to the validation files after export: `(description, change(image, path))`, None for none"
    from PIL import ImageChops
    def save(fmt, **kw): return lambda im, f: im.save(f, format=fmt, **kw)
    return [('unchanged (a fresh load)', None),
            ('saved again as PNG: the same pixels, other bytes', lambda im, f: im.save(f, format='PNG', optimize=True, compress_level=9)),
            ('re-encoded as JPEG, quality 95', save('JPEG', quality=95)),
            ('re-encoded as JPEG, quality 75', save('JPEG', quality=75)),
            ('3 grey levels darker', lambda im, f: im.point(lambda v: max(v - 3, 0)).save(f, format='PNG')),
            ('scanned at twice the resolution', lambda im, f: im.resize((im.width*2, im.height*2), Image.BILINEAR).save(f, format='PNG')),
            ('shifted by 1 pixel', lambda im, f: ImageChops.offset(im, 1, 0).save(f, format='PNG')),
            ('inverted (a negative)', lambda im, f: ImageOps.invert(im.convert('RGB')).save(f, format='PNG')),
            ('each file replaced by another validation file', 'shuffle')]


def answers(tmp):
    "How far the answers kept at export move when the validation images stay the same, and when they change; what the check says"
    say('\n## The answers check: what moves the answers kept at export')
    say('(`model_check` says the images or their preparation differ from training when more than 2 % of the kept answers '
        '(up to 500 validation items) changed, or their confidence moved by more than 0.02 (median). The validation files are '
        'changed under the same names after export, then `load_model(fname, table)`. "bf16" is the same files, the '
        'answers computed with the forward pass under bfloat16 autocast on the CPU, as fastai\'s MixedPrecision(amp_mode=\'bf16\') '
        'does on a GPU, against float32.)')
    sets = [('digits (16 px)', read_collection(digits_collection(tmp/'ans_digits', size=16)/'collection.csv', check_images=False, progress=False), 16)]
    if ORACLE.exists(): sets.append(('oracle-mnist (28 px)', oracle_collection(tmp/'ans_oracle'), 28))
    for name, df, size in sets:
        set_seed(0, reproducible=True)
        learn = defaults_learner(collection_dls(df, size=size, bs=32), lr=1e-3)
        with learn.no_bar(), learn.no_logging(): learn.fit(8)
        fn = learn.export_model(tmp/f'ans_{size}.pkl', overwrite=True, progress=False)
        with learn.no_bar(): err = learn.get_split_preds('valid').error
        say(f'\n### {name}: version-zero LeNet, 8 epochs (Adam 1e-3), valid error {err:.1%}')
        say('| the validation files since export | answers changed | confidence change: median | largest | the check |')
        say('| --- | --- | --- | --- | --- |')
        root = Path(df.attrs['path'])
        va = df[df.split == 'valid'].fname.tolist()
        for i, (what, change) in enumerate(_variants()):
            d = tmp/f'ans_{size}_{i}'
            shutil.copytree(root, d)
            if change == 'shuffle':
                perm = np.random.default_rng(0).permutation(len(va))
                data = [(d/f).read_bytes() for f in va]
                for f, j in zip(va, perm): (d/f).write_bytes(data[j])
            elif change is not None:
                for f in va:
                    with Image.open(d/f) as im: im.load()
                    change(im, d/f)
            dv = df.copy(); dv.attrs = dict(df.attrs, path=d)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore'); c = load_model(fn, dv, check=False, progress=False).model_check(progress=False)
            a = c.answers
            say(f'| {what} | {len(c.changed)} of {len(a)} ({len(c.changed)/len(a):.1%}) | {a.confidence_change.median():.4f} | '
                f'{a.confidence_change.max():.3f} | {"flags it" if c.answers_differ else "quiet"} |')
            shutil.rmtree(d)
        ll = load_model(fn, df, check=False, progress=False)
        with ll.no_bar():
            p32 = ll.get_split_preds('valid', cache=False).probs.float()
            with ll.added_cbs(CPUbf16()): p16 = ll.get_split_preds('valid', cache=False).probs.float()
        (c32, y32), (c16, y16) = p32.max(1), p16.max(1)
        a = pd.DataFrame({'prediction_then': y32.numpy(), 'prediction': y16.numpy(), 'confidence_change': (c32 - c16).abs().numpy()})
        c = ModelCheck(None, None, None, a, None)   # the check's own rule on these answers
        say(f'| unchanged, answers under bf16 autocast (all {len(a)} valid items) | {len(c.changed)} of {len(a)} ({len(c.changed)/len(a):.1%}) | '
            f'{a.confidence_change.median():.4f} | {a.confidence_change.max():.3f} | {"would flag it" if c.answers_differ else "would be quiet"} |')


if __name__ == '__main__':
    import sys
    header('bench_saved')
    tmp = Path(tempfile.mkdtemp())
    if sys.argv[1:] in (['session'], ['answers']):   # that section alone: results/saved_session.txt, saved_answers.txt
        {'session': session, 'answers': answers}[sys.argv[1]](tmp); save(f'saved_{sys.argv[1]}'); sys.exit()
    digits = read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)
    catches('digits (16 px)', digits, 16, 150, tmp)
    if ORACLE.exists():
        oracle = oracle_collection(tmp/'oracle')
        catches('oracle-mnist (28 px)', oracle, 28, 600, tmp)
    else: say('\n(oracle-mnist not found: skipped)')
    cost(tmp)
    session(tmp)
    answers(tmp)
    save('saved')
