"""Where the near-copy bounds fall: a difference hash within `max_dist` bits (4 by default) and a 16×16 thumbnail within
1.5 % (`find_duplicates`, `duplicate_groups`, troubleshoot's leakage check, `keep_copies_together`, and the saved-model
check by content, on 8×8 thumbnails).

1. Copies found: each of 1,000 oracle-mnist scans (every third; when ../shared/data/oracle-mnist is there) re-saved as
   JPEG at quality 90 and 75, and 3 grey levels darker (clipped at 0): the share whose hash is within 4, 5, 6 bits of
   the original and whose thumbnail is within 1.5 %.
2. False copies: images in groups of copies (`duplicate_groups`) at 4, 5, 6 bits in collections of distinct images:
   the 3,000 oracle scans, scikit-learn's 1,797 digits (16 px), and the sample collection's 630 pages (its blank pages
   are near-uniform, with text showing through).

`python benchmarks/near_copy_bounds.py`; writes benchmarks/results/near_copy_bounds.txt.
"""
import tempfile, time, warnings
from pathlib import Path
import numpy as np
from PIL import Image
warnings.filterwarnings('ignore')
from glamdebug.data import read_collection
from glamdebug.samples import digits_collection, sample_collection
from glamdebug.debug import image_hashes, _hash_images, duplicate_groups

from common import say, header, save
from oracle_merge import ORACLE, oracle_collection

BITS = (4, 5, 6)

if __name__ == '__main__':
    header('near_copy_bounds')
    tmp = Path(tempfile.mkdtemp())
    sets = []
    if ORACLE.exists():
        oracle = oracle_collection(tmp/'oracle')
        sets.append(('oracle-mnist scans', oracle))
        root, fs = Path(oracle.attrs['path']), oracle.fname[::3].tolist()
        say(f'\n## Copies found: {len(fs):,} oracle-mnist scans changed, against the originals')
        say('| the copy | hash bits: largest | over 4 bits | found at ' + ' | '.join(f'{b} bits' for b in BITS) + ' | thumbnail over 1.5 % |')
        say('| --- | --- | --- | ' + ' | '.join('---' for _ in BITS) + ' | --- |')
        for what, change in [('JPEG, quality 90', lambda im, p: im.save(p, format='JPEG', quality=90)),
                             ('JPEG, quality 75', lambda im, p: im.save(p, format='JPEG', quality=75)),
                             ('3 grey levels darker (clipped at 0), PNG', lambda im, p: Image.fromarray(np.clip(np.asarray(im).astype(int) - 3, 0, 255).astype(np.uint8)).save(p, format='PNG'))]:
            bits, mae = [], []
            for f in fs:
                a = image_hashes(root/f)
                with Image.open(root/f) as im: im.load(); change(im, tmp/'copy')
                b = image_hashes(tmp/'copy')
                bits.append(bin(a[1] ^ b[1]).count('1'))
                mae.append(float(np.abs(a[3].astype(np.float32) - b[3].astype(np.float32)).mean())/255)
            bits, mae = np.array(bits), np.array(mae)
            say(f'| {what} | {bits.max()} | {(bits > 4).sum()} | ' + ' | '.join(f'{((bits <= b) & (mae <= 0.015)).mean():.1%}' for b in BITS)
                + f' | {(mae > 0.015).sum()} |')
    else: say('\n(oracle-mnist not found: copies found skipped)')
    sets.append(('digits (16 px)', read_collection(digits_collection(tmp/'digits', size=16)/'collection.csv', check_images=False, progress=False)))
    sets.append(('sample collection pages', read_collection(sample_collection()/'collection.csv', progress=False)))
    say('\n## False copies: images grouped as copies in collections of distinct images')
    say('| collection | images | ' + ' | '.join(f'{b} bits' for b in BITS) + ' |')
    say('| --- | --- | ' + ' | '.join('---' for _ in BITS) + ' |')
    for name, df in sets:
        files = [Path(df.attrs['path'])/f for f in df.fname]
        hs = _hash_images(files, progress=False)
        cells = []
        for b in BITS:
            t0 = time.perf_counter(); g = duplicate_groups(files, max_dist=b, hashes=hs, progress=False); dt = time.perf_counter() - t0
            grouped = np.flatnonzero(np.bincount(g, minlength=len(g))[g] > 1)
            what = ', '.join(sorted({str(df.label.iloc[i]) for i in grouped}))
            cells.append(f'{len(grouped)}{f" ({what})" if len(grouped) else ""}, {dt:.2f} s')
        say(f'| {name} | {len(files):,} | ' + ' | '.join(cells) + ' |')
    save('near_copy_bounds')
