# Hand-written, not exported from a notebook (as fastai's own `all.py`): the one import for notebooks.
"`from glamdebug.all import *`: fastai's vision API and every public name of glamdebug"
from fastai.vision.all import *
from .core import *
from .data import *
from .preds import *
from .samples import *
from .models import *
from .evaluate import *
from .interpret import *
from .merge import *
from .debug import *
from .tune import *
from .shift import *
from .fastpath import *
from .curve import *
from .labels import *
from .looks import *
from .balance import *
from .slices import *
from .baselines import *
from .confidence import *
from .compare import *
from .delivery import *
from .active import *
from .saved import *
