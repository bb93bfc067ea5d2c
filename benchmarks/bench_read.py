"""Benchmark `read_collection`, the check at the edge every command starts with, at collection scale.

Printed side by side in one run, on the same files, with plain fastai's way to get there:
- with the image check: `read_collection` (table checks, then every image decoded in a thread pool, JPEGs in draft
  mode) vs `pd.read_csv` + fastai's `verify_images` (its parallel check that every image opens);
- the table alone (`check_images=False`: empty labels, unknown splits, duplicate rows, missing files) vs `pd.read_csv`
  alone, at 10,000 and 100,000 rows (empty placeholder files: only their existence is checked);
- a `;`-separated table (as Excel writes in many locales) vs the same table with commas;
- a table whose second box was renamed on disk after it was made (half its files missing): `read_collection`, which
  walks the collection folder once to name where each missing file is and the folder change, vs `pd.read_csv` and an
  `os.path.isfile` per row (which finds them missing, and no more);
- a table whose names are a catalogue's identifiers, without the extension (`box3/p000123` for `box3/p000123.tif`):
  `read_collection`, which finds the one image file of each name, vs fastai's `get_image_files` and a dict from each
  file's name without its extension, by hand.

Collections: the sample pages rendered at 64 px PNG (many small files), the same pages as 2,400 x 1,800 px JPEG scans
(decoding dominates) and as lossless JPEG 2000 masters (`read_collection` decodes them at a reduced resolution level,
fastai's check in full), and ../shared/data/oracle-mnist's 3,000 real scans when present. Both sides see the same files;
the file cache is warmed once before the timings, which are medians of 3 interleaved runs.

Usage: python benchmarks/bench_read.py [--small 10000] [--scans 600] [--jp2 100] [--parts images,table,moved,noext]
       [--out benchmarks/results/read.txt]
"""
import argparse, os, sys, time, shutil, tempfile, platform, warnings
from multiprocessing import Pool
from pathlib import Path
import numpy as np, pandas as pd
from fastai.vision.utils import verify_images
from glamdebug.core import atomic_write
from glamdebug.data import read_collection
from glamdebug.samples import SAMPLE_CLASSES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'benchmarks'))
from bench_copies import _render  # noqa: E402  (one distinct page, a PNG or a 2,400 x 1,800 JPEG scan)

REPS = 3


def med(f):
    ts = []
    for _ in range(REPS):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def write_table(folder, fnames, name='collection.csv', sep=','):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(dict(fname=fnames, label=[SAMPLE_CLASSES[i % len(SAMPLE_CLASSES)] for i in range(len(fnames))],
                           split=rng.choice(['train', 'valid', 'test'], len(fnames), p=[.7, .15, .15])))
    df.to_csv(folder/name, index=False, sep=sep)
    return folder/name


def with_images(name, csv, rows):
    folder = csv.parent
    files = [folder/f for f in pd.read_csv(csv).fname]
    verify_images(files); read_collection(csv, progress=False)  # warm the file cache for both
    t_plain = med(lambda: verify_images([folder/f for f in pd.read_csv(csv).fname]))
    t_ours = med(lambda: read_collection(csv, progress=False))
    rows.append(dict(what=f'{name}: table + every image checked', rows=len(files), plain='pd.read_csv + verify_images',
                     plain_s=t_plain, glamdebug_s=t_ours, ratio=t_ours/t_plain))
    print(rows[-1], flush=True)


def table_only(n, tmp, rows):
    d = tmp/f'rows{n}'; d.mkdir()
    fnames = [f'f{i:06d}.png' for i in range(n)]
    for f in fnames: (d/f).touch()
    for sep, what in ((',', 'comma'), (';', "';' (spreadsheet export)")):
        csv = write_table(d, fnames, name=f't{ord(sep)}.csv', sep=sep)
        read_collection(csv, check_images=False, progress=False)
        t_plain = med(lambda: pd.read_csv(csv, sep=sep, dtype=str))
        t_ours = med(lambda: read_collection(csv, check_images=False, progress=False))
        rows.append(dict(what=f'table alone, {what}: empty labels, splits, duplicates, missing files', rows=n,
                         plain=f'pd.read_csv(sep={sep!r})', plain_s=t_plain, glamdebug_s=t_ours, ratio=t_ours/t_plain))
        print(rows[-1], flush=True)


def moved(n, tmp, rows):
    d = tmp/f'moved{n}'
    fnames = [f'box{1 + (i >= n//2)}/p{i:06d}.png' for i in range(n)]
    for f in fnames: (d/f).parent.mkdir(parents=True, exist_ok=True); (d/f).touch()
    csv = write_table(d, fnames)
    (d/'box2').rename(d/'box2_2024')
    def ours():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            read_collection(csv, check_images=False, progress=False, on_bad='drop')
        return str(w[0].message)
    msg = ours(); assert f"{n//2} of the {n//2} missing files are under other folders of the collection: 'box2/' → 'box2_2024/'" in msg, msg
    t_plain = med(lambda: [os.path.isfile(d/f) for f in pd.read_csv(csv, dtype=str).fname])
    t_ours = med(ours)
    rows.append(dict(what="table alone, a box renamed on disk: where each missing file is, and the folder change", rows=n,
                     plain='pd.read_csv + os.path.isfile', plain_s=t_plain, glamdebug_s=t_ours, ratio=t_ours/t_plain))
    print(rows[-1], flush=True)


def no_extension(n, tmp, rows):
    from fastai.data.transforms import get_image_files
    d = tmp/f'noext{n}'
    stems = [f'box{i % 20}/p{i:06d}' for i in range(n)]
    for f in stems: (d/f).parent.mkdir(parents=True, exist_ok=True); (d/f'{f}.tif').touch()
    csv = write_table(d, stems)
    def ours():
        with warnings.catch_warnings(): warnings.simplefilter('ignore'); return read_collection(csv, check_images=False, progress=False)
    def plain():
        by = {str(p.relative_to(d).with_suffix('')): p for p in get_image_files(d)}
        return pd.read_csv(csv, dtype=str).fname.map(by)
    assert list(ours().fname) == [f'{f}.tif' for f in stems] and plain().notna().all()
    t_plain, t_ours = med(plain), med(ours)
    rows.append(dict(what="table alone, names without their extension (a catalogue's identifiers): each one's file", rows=n,
                     plain='get_image_files + a dict by name', plain_s=t_plain, glamdebug_s=t_ours, ratio=t_ours/t_plain))
    print(rows[-1], flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--small', type=int, default=10000, help='64 px PNG pages')
    ap.add_argument('--scans', type=int, default=600, help='2,400 x 1,800 JPEG scans')
    ap.add_argument('--jp2', type=int, default=100, help='2,400 x 1,800 lossless JPEG 2000 masters')
    ap.add_argument('--parts', default='images,table,moved,noext', help='which parts to run, comma separated')
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'read.txt'))
    a = ap.parse_args()
    parts = set(a.parts.split(','))
    warnings.filterwarnings('ignore')
    t0 = time.perf_counter(); rows = []
    tmp = Path(tempfile.mkdtemp(prefix='read_'))
    try:
        cls = sorted(SAMPLE_CLASSES)
        for name, n, size, scan, ext in () if 'images' not in parts else (('sample pages, 64 px PNG', a.small, 64, False, 'png'),
                                         ('sample pages as 2,400 x 1,800 px JPEG scans', a.scans, 300, True, 'jpg'),
                                         ('sample pages as 2,400 x 1,800 px lossless JPEG 2000', a.jp2, 300, True, 'jp2')):
            d = tmp/ext; d.mkdir()
            jobs = [(str(d/f'p{i}.{ext}'), cls[i % len(cls)], i, size, scan) for i in range(n)]
            with Pool(2) as p: p.map(_render, jobs, chunksize=8)
            with_images(name, write_table(d, [f'p{i}.{ext}' for i in range(n)]), rows)
        from oracle_merge import ORACLE, oracle_collection
        if 'images' not in parts: pass
        elif ORACLE.exists():
            d = tmp/'oracle'; d.mkdir()
            odf = oracle_collection(d)
            with_images('oracle-mnist real scans, 28 px PNG', write_table(d, list(odf.fname)), rows)
        else: print(f'{ORACLE} is absent: oracle-mnist part skipped')
        for n in (10_000, 100_000) if 'table' in parts else (): table_only(n, tmp, rows)
        if 'moved' in parts: moved(100_000, tmp, rows)
        if 'noext' in parts: no_extension(100_000, tmp, rows)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    t = pd.DataFrame(rows)
    head = (f'read_collection vs plain fastai/pandas on the same files; {platform.machine()}, {os.cpu_count()} cores; '
            f'medians of {REPS} runs, file cache warm; ratio = glamdebug / plain (above 1: slower); total {time.perf_counter() - t0:.0f} s')
    txt = head + '\n' + t.to_string(index=False, float_format=lambda v: f'{v:.3g}') + '\n'
    print(txt)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.out, lambda f: f.write(txt))


if __name__ == '__main__': main()
