"""Named constants shared by the whole pipeline: one place for every number a script relies on."""

# EmoNet's input: a square RGB face crop of IMAGE_SIZE pixels, scaled to [0, 1], no mean/std normalisation.
IMAGE_SIZE = 256
# The face-alignment part predicts one HEATMAP_SIZE x HEATMAP_SIZE heatmap per landmark.
HEATMAP_SIZE = 64
NUM_LANDMARKS = 68
# Width of the "EmoNet feature": the input of the final `emo_fc_2` block (after the 4x4 average pool).
FEATURE_DIM = 256
# Released checkpoints exist for 8 (AffectNet-8) and 5 expression classes.
SUPPORTED_N_EXPRESSION = (5, 8)

# AFEW-VA labels are integers on [-10, 10]; EmoNet predicts valence/arousal on [-1, 1].
LABEL_MIN = -10.0
LABEL_MAX = 10.0
LABEL_SCALE = 10.0  # raw label / LABEL_SCALE -> EmoNet's [-1, 1] scale

# EmoNet's training crop: a square of side FACE_CROP_REFERENCE * (w + h) / FACE_CROP_DIVISOR around the
# centre of the landmarks' bounding box (w, h: the box's width and height).
FACE_CROP_REFERENCE = 200.0
FACE_CROP_DIVISOR = 220.0

# Mirror permutation of the 68-point iBUG/300-W mark-up: after a horizontal flip, point i of the mirrored
# face is point FLIP_ORDER_68[i] of the original (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
# outer mouth 48-59, inner mouth 60-67).
FLIP_ORDER_68 = (
    16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,  # jaw
    26, 25, 24, 23, 22, 21, 20, 19, 18, 17,  # brows
    27, 28, 29, 30,  # nose bridge (on the axis)
    35, 34, 33, 32, 31,  # nostrils
    45, 44, 43, 42, 47, 46,  # eye 36-41 <-> eye 42-47
    39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lip
    64, 63, 62, 61, 60, 67, 66, 65,  # inner lip
)

# Where the released weights come from (they cannot be downloaded by this project).
PRETRAINED_SOURCE = "the face-analysis/emonet repository on GitHub, folder `pretrained/` (emonet_8.pth, emonet_5.pth)"
DEFAULT_PRETRAINED_PATH = "pretrained/emonet_8.pth"

# Kaggle copy of AFEW-VA; the version is pinned so that kagglehub finds a cached copy without asking the API.
KAGGLE_HANDLE = "hoanguyensgu/afew-va/versions/1"
AFEW_VA_FOLDER = "AFEW-VA"
AFEW_VA_ROOT_ENV = "AFEW_VA_ROOT"
# The dataset of a manifest or extraction that names none (everything written before other datasets were read).
DEFAULT_DATASET = "afew_va"

# How EmoNet runs (`engine.py`): auto takes the inference engine on the CPU and PyTorch on CUDA.
BACKENDS = ("auto", "torch", "onnxruntime")

# Feature files and manifest written by extraction and read by training/evaluation.
MANIFEST_FORMAT = "emonet-features/2"
# A comparison's protocol (folds.json, the report's protocol) where it is not cross-validation: scored on a dataset's
# official validation split, and the cross-corpus rows scored on another corpus.
OFFICIAL = "official"
CROSS_CORPUS = "cross-corpus"


# -- the choices and defaults of the scripts' flags (the parsers read them without importing torch) ----------------------
# Colour spaces fed to EmoNet (`colour.convert_colour`); rgb is what it was trained on.
COLOR_SPACES = ("rgb", "hsv", "hsv_opencv", "lab", "yuv")
DEFAULT_COLOR_SPACE = "rgb"
# Face crops (`crop.crop_face`): EmoNet's square from 68 landmarks, or the whole frame resized (the seed's).
CROP_MODES = ("landmarks", "resize")
DEFAULT_CROP = "landmarks"
# predict.py's crops: the model's own, or one of these.
PREDICT_CROPS = ("model", "landmarks", "box", "resize")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
LOSS_NAMES = ("ccc", "mse", "mae")
OPTIMIZERS = ("adam", "sgd")
# What a split keeps whole on one side (frame leaks: neighbouring frames on both sides).
SPLIT_MODES = ("clip", "actor", "frame")
DEFAULT_VAL_SPLIT = 0.2
HEAD_KINDS = ("frame", "smooth", "temporal")
DEFAULT_HEAD = "frame"
DEFAULT_CLIPS_PER_BATCH = 8
# The training scripts' defaults (train_emonet_features.py, train_emonet_hsv.py).
HEAD_DEFAULTS = {"batch_size": 64, "epochs": 50, "learning_rate": 1e-3}
FINETUNE_DEFAULTS = {"batch_size": 32, "epochs": 10, "learning_rate": 1e-4}
# The comparison's approaches: heads on extracted features, or EmoNet fine-tuned on frames.
APPROACHES = ("head", "finetune")
FACE_MODES = ("all", "largest")
SUBSETS = ("val", "train", "all")
# evaluate_hsv_model.py: what --model_type names, and EmoNet's expression-class sets of AffectNet (--expression_classes).
EVALUATED_MODELS = ("feature", "full", "pretrained")
EXPRESSION_CLASS_SETS = (8, 5)
