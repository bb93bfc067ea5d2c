"""The collection table of a folder tree (`folder_collection`, `glamdebug table`) next to what plain fastai does before
it decodes anything in `ImageDataLoaders.from_folder`: `get_image_files`, `parent_label` per file, `GrandparentSplitter`.

A tree as collections are sorted: split folders (train, valid, test) holding class folders, a third of the classes' files
in box sub-folders of their class folder (`train/map/box_07/…`), and one XML sidecar per ten images. Files are empty: both
sides only list and name them. Also counted: the images fastai's `parent_label` labels by their box instead of their class,
and those `GrandparentSplitter` puts in no split (a boxed image has no split folder right above its class folder).

Usage: python benchmarks/bench_table.py [--n 100000] [--classes 20]
"""
import argparse, os, time, tempfile, shutil, warnings
from pathlib import Path
from common import say, header, save
from fastai.vision.all import get_image_files, parent_label, GrandparentSplitter
from glamdebug.data import folder_collection

def make_tree(root, n, classes):
    splits = ['train']*8 + ['valid'] + ['test']
    for i in range(n):
        s, c = splits[i % 10], f'class_{i % classes:03d}'
        d = root/s/c/(f'box_{i % 7:02d}' if i % 3 == 0 else '')
        d.mkdir(parents=True, exist_ok=True)
        (d/f'{i:07d}.jpg').touch()
        if i % 10 == 0: (d/f'{i:07d}.xml').touch()

def best(f, reps=3):
    t = []
    for _ in range(reps):
        t0 = time.perf_counter(); out = f(); t.append(time.perf_counter() - t0)
    return min(t), out

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--n', type=int, default=100_000); p.add_argument('--classes', type=int, default=20)
    a = p.parse_args()
    header('bench_table: a folder tree to a collection table')
    root = Path(tempfile.mkdtemp(prefix='benchtable'))
    t0 = time.perf_counter(); make_tree(root, a.n, a.classes)
    say(f'{a.n:,} images in {a.classes} class folders under train/valid/test, a third in box sub-folders, {a.n//10:,} XML sidecars; made in {time.perf_counter()-t0:.1f} s (not counted); best of 3 runs')
    def fastai_side():
        files = get_image_files(root)
        labels = [parent_label(f) for f in files]
        tr, va = GrandparentSplitter(train_name='train', valid_name='valid')(files)
        return files, labels, tr, va
    def glam_side():
        with warnings.catch_warnings(): warnings.simplefilter('ignore'); return folder_collection(root)
    tf, (files, labels, tr, va) = best(fastai_side)
    tg, df = best(glam_side)
    by_box = sum(l.startswith('box_') for l in labels)
    say(f'plain fastai (get_image_files + parent_label + GrandparentSplitter): {tf:.2f} s, {len(files):,} images, '
        f'{len(set(labels))} labels ({by_box:,} images labelled by their box), train {len(tr):,}, valid {len(va):,}: '
        f'{len(files) - len(tr) - len(va):,} in neither split (the test folder, and every boxed image: no split folder above it)')
    say(f'glamdebug folder_collection: {tg:.2f} s, {len(df):,} images, {df.label.nunique()} labels, splits '
        + ', '.join(f'{s} {n:,}' for s, n in df.split.value_counts().items()))
    say(f'ratio fastai / glamdebug: {tf/tg:.2f}x (above 1: glamdebug faster)')
    shutil.rmtree(root)
    save('table')
