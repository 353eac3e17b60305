"""Static metadata of every built-in dataset: shapes, classes, normalization, files, checksums.

Nothing here touches the disk; :mod:`advml.data.registry` combines this catalogue with the
loaders. Checksums are the values published with (or long established for) each official file:

* MNIST — LeCun, Cortes & Burges, http://yann.lecun.com/exdb/mnist/ (md5 as listed by
  torchvision, sha256 as listed by the Keras-style loaders);
* Fashion-MNIST — Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
  Benchmarking Machine Learning Algorithms", arXiv:1708.07747 (md5 from the project README);
* CIFAR-10 — Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009,
  https://www.cs.toronto.edu/~kriz/cifar.html (archive and per-batch md5);
* USPS — Hull, "A database for handwritten text recognition research", IEEE TPAMI 16(5), 1994;
  the HDF5 packaging of Kaggle's "usps-dataset" has no published checksum, so the hash of the
  known-good copy is pinned instead;
* MNIST-M (test split) — Ganin & Lempitsky, ICML 2015; no published checksum exists, so the
  digests of the shared copy (original PNGs re-packed in a deterministic ``.tar.gz``) are pinned;
* UCI Adult — Becker & Kohavi 1996; md5 as published with the UCI files (sha256 of the same bytes).

``MNIST_M`` and ``ADULT`` live in :data:`REPRESENTATION_DATASETS`, not :data:`CATALOG`: they have
their own loaders (:mod:`advml.data.mnistm`, :mod:`advml.data.adult`) because their splits or
outputs differ from ``advml.data.load``'s ``(x, y)`` train/test contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DIGIT_CLASSES: tuple[str, ...] = tuple(str(k) for k in range(10))


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset, relative to the dataset's folder (e.g. ``<root>/mnist/``).

    ``md5``/``sha256`` are the published hex digests (``None`` where none is known); ``size``
    is the size in bytes where known. ``download`` is ``True`` for the files that
    :func:`advml.data.download` fetches (a member of an archive is checked but not fetched).
    """

    name: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    download: bool = True


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a dataset, as returned by :func:`advml.data.info`.

    Attributes:
        name: canonical name (``"mnist"``) or, for user data, the path given.
        input_shape: shape of one sample: ``(C, H, W)`` for images, ``(2,)`` for toy data.
        num_classes: number of labels; labels are ``0 .. num_classes - 1``.
        class_names: human-readable name of every label, in label order.
        mean, std: per-channel statistics of the training split in [0, 1] units, for a
            ``Normalize`` layer (``(x - mean) / std``); identity ``(0, 1)`` for toy data.
        splits: number of samples in each split, e.g. ``{"train": 60000, "test": 10000}``.
        folder: name of the sub-folder of the data root that holds the files (``None`` when
            the dataset needs no files).
        files: every official file the loader knows, with its checksums.
        mirrors: base URLs that :func:`advml.data.download` tries in order.
        citation: the paper or page describing the dataset.
        description: one line on what the dataset is and how advml reads it.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: dict[str, int] = field(default_factory=dict)
    folder: str | None = None
    files: tuple[DataFile, ...] = ()
    mirrors: tuple[str, ...] = ()
    citation: str = ""
    description: str = ""

    @property
    def checksums(self) -> dict[str, str]:
        """``{file name: "md5:<hex>" or "sha256:<hex>"}`` for every file with a known digest."""
        sums: dict[str, str] = {}
        for spec in self.files:
            if spec.sha256:
                sums[spec.name] = f"sha256:{spec.sha256}"
            elif spec.md5:
                sums[spec.name] = f"md5:{spec.md5}"
        return sums

    @property
    def urls(self) -> tuple[str, ...]:
        """Download URL of every downloadable file from the first mirror."""
        if not self.mirrors:
            return ()
        return tuple(self.mirrors[0] + spec.name for spec in self.files if spec.download)


def _idx_files(md5: dict[str, str], sha256: dict[str, str], size: dict[str, int]):
    return tuple(
        DataFile(name, md5=md5[name], sha256=sha256.get(name), size=size.get(name)) for name in md5
    )


MNIST = DatasetInfo(
    name="mnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    class_names=DIGIT_CLASSES,
    mean=(0.1307,),
    std=(0.3081,),
    splits={"train": 60000, "test": 10000},
    folder="mnist",
    files=_idx_files(
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        sha256={
            "train-images-idx3-ubyte.gz": (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
            ),
            "train-labels-idx1-ubyte.gz": (
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
            ),
            "t10k-images-idx3-ubyte.gz": (
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
            ),
            "t10k-labels-idx1-ubyte.gz": (
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
            ),
        },
        size={
            "train-images-idx3-ubyte.gz": 9912422,
            "train-labels-idx1-ubyte.gz": 28881,
            "t10k-images-idx3-ubyte.gz": 1648877,
            "t10k-labels-idx1-ubyte.gz": 4542,
        },
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    citation="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, 'Gradient-based learning applied to "
    "document recognition', Proc. IEEE 86(11), 1998; http://yann.lecun.com/exdb/mnist/",
    description="Handwritten digits, 28x28 grey, IDX files (gzip or raw).",
)

FASHION_MNIST = DatasetInfo(
    name="fashion-mnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mean=(0.2860,),
    std=(0.3530,),
    splits={"train": 60000, "test": 10000},
    folder="fashion-mnist",
    files=_idx_files(
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        sha256={},
        size={},
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    citation="H. Xiao, K. Rasul, R. Vollgraf, 'Fashion-MNIST: a Novel Image Dataset for "
    "Benchmarking Machine Learning Algorithms', arXiv:1708.07747, 2017",
    description="Zalando article images, 28x28 grey, IDX files (gzip or raw).",
)

#: Name of the folder inside ``cifar-10-python.tar.gz`` that holds the batches.
CIFAR10_BATCH_DIR = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_BATCH_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}

CIFAR10 = DatasetInfo(
    name="cifar10",
    input_shape=(3, 32, 32),
    num_classes=10,
    class_names=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    # Population statistics of the 50,000 training images (not the often-quoted
    # (0.2023, 0.1994, 0.2010), which is the mean of per-image standard deviations).
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    splits={"train": 50000, "test": 10000},
    folder="cifar10",
    files=(
        DataFile(
            CIFAR10_ARCHIVE,
            md5="c58f30108f718f92721af3b95e74349a",
            sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            size=170498071,
        ),
        *(
            DataFile(f"{CIFAR10_BATCH_DIR}/{member}", md5=md5, download=False)
            for member, md5 in CIFAR10_BATCH_MD5.items()
        ),
    ),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    citation="A. Krizhevsky, 'Learning Multiple Layers of Features from Tiny Images', tech. "
    "report, U. Toronto, 2009; https://www.cs.toronto.edu/~kriz/cifar.html",
    description="Natural images, 32x32 RGB, python pickle batches (folder or .tar.gz).",
)

USPS = DatasetInfo(
    name="usps",
    input_shape=(1, 16, 16),
    num_classes=10,
    class_names=DIGIT_CLASSES,
    mean=(0.2545,),
    std=(0.3846,),
    splits={"train": 7291, "test": 2007},
    folder="usps",
    files=(
        DataFile(
            "usps.h5",
            md5="355df6b942eb766252e0340bc019b0b9",
            sha256="734f88c541104a956d88be2c95d03b4a463ffd74ccc2ba9c80841fb98e3fcb36",
            size=2913522,
        ),
    ),
    # The Kaggle original needs a login; this public copy is pinned to a commit and verified
    # against the sha256 above after download.
    mirrors=(
        "https://raw.githubusercontent.com/niuers/Learning-From-Data-A-Short-Course/"
        "35684e893b63bf4039bafcc6d34fe935851baf9a/data/",
    ),
    citation="J. J. Hull, 'A database for handwritten text recognition research', IEEE TPAMI "
    "16(5):550-554, 1994; HDF5 file of Kaggle's 'usps-dataset' (bistaumanga)",
    description="US postal-service digits, 16x16 grey, HDF5 (train/test groups).",
)

DIGITS = DatasetInfo(
    name="digits",
    input_shape=(1, 8, 8),
    num_classes=10,
    class_names=DIGIT_CLASSES,
    mean=(0.3054,),
    std=(0.3761,),
    splits={"train": 1437, "test": 360},
    citation="E. Alpaydin, C. Kaynak, 'Optical Recognition of Handwritten Digits', UCI ML "
    "Repository, 1998; bundled with scikit-learn (sklearn.datasets.load_digits)",
    description="8x8 digits bundled with scikit-learn; stratified split, 360 test, seed 0.",
)

#: Number of samples of each split of the toy mixtures and the seed that draws them.
TOY_SPLITS: dict[str, int] = {"train": 50000, "test": 2500}
TOY_SEEDS: dict[str, int] = {"train": 0, "test": 1}

TOY_RING = DatasetInfo(
    name="toy-ring",
    input_shape=(2,),
    num_classes=8,
    class_names=tuple(f"mode{k}" for k in range(8)),
    mean=(0.0, 0.0),
    std=(1.0, 1.0),
    splits=dict(TOY_SPLITS),
    citation="Z. Lin, A. Khetan, G. Fanti, S. Oh, 'PacGAN: The power of two samples in "
    "generative adversarial networks', NeurIPS 2018 (2D-ring)",
    description="8 Gaussians (sigma 0.01) on the unit circle; y = mode index.",
)

TOY_GRID = DatasetInfo(
    name="toy-grid",
    input_shape=(2,),
    num_classes=25,
    class_names=tuple(f"mode{k}" for k in range(25)),
    mean=(0.0, 0.0),
    std=(1.0, 1.0),
    splits=dict(TOY_SPLITS),
    citation="Z. Lin, A. Khetan, G. Fanti, S. Oh, 'PacGAN: The power of two samples in "
    "generative adversarial networks', NeurIPS 2018 (2D-grid)",
    description="25 Gaussians (sigma 0.05) on {-4,-2,0,2,4}^2; y = mode index.",
)

MNIST_M = DatasetInfo(
    name="mnist-m",
    input_shape=(3, 28, 28),
    num_classes=10,
    class_names=DIGIT_CLASSES,
    # statistics of all 9,001 test images at 28x28 (there is no training split here)
    mean=(0.4609, 0.4644, 0.4109),
    std=(0.2393, 0.2251, 0.2447),
    splits={"test": 9001, "adapt": 4501, "eval": 4500},
    folder="mnist-m",
    files=(
        DataFile(
            "mnist_m_test.tar.gz",
            md5="ac4629844f13688d55ddc9559a412d4e",
            sha256="88d36f4bcf02e10000e2cf8684a8cd61e088216b2825903cc566136bb51cdc5d",
            size=17692707,
        ),
    ),
    citation="Y. Ganin, V. Lempitsky, 'Unsupervised Domain Adaptation by Backpropagation', "
    "ICML 2015; Ganin et al., 'Domain-Adversarial Training of Neural Networks', JMLR 17, 2016",
    description="MNIST test digits blended with BSDS500 colour patches; test split only "
    "(32x32 RGB PNGs in a .tar.gz, read at 28x28), split into adapt/eval halves.",
)

ADULT = DatasetInfo(
    name="adult",
    input_shape=(102,),  # 6 numeric + 96 one-hot (104 with sex as a feature)
    num_classes=2,
    class_names=("<=50K", ">50K"),
    # the features are standardized / one-hot already
    mean=(0.0,),
    std=(1.0,),
    splits={"train": 30162, "test": 15060},
    folder="adult",
    files=(
        DataFile(
            "adult.data",
            md5="5d7c39d7b8804f071cdd1f2a7c460872",
            sha256="5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
            size=3974305,
        ),
        DataFile(
            "adult.test",
            md5="35238206dfdf7f1fe215bbb874adecdc",
            sha256="a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
            size=2003153,
        ),
    ),
    mirrors=("https://archive.ics.uci.edu/ml/machine-learning-databases/adult/",),
    citation="B. Becker, R. Kohavi, 'Adult', UCI Machine Learning Repository, 1996, "
    "https://doi.org/10.24432/C5XW20; R. Kohavi, KDD 1996",
    description="1994 US census records; label income >50K, sensitive attribute sex; rows "
    "with missing values dropped, one-hot + standardized features.",
)

#: Datasets with their own loaders, outside :data:`CATALOG` (and so outside
#: :func:`advml.data.load` / ``advml data list``): MNIST-M has ``test``/``adapt``/``eval``
#: splits (:func:`advml.data.mnistm.load_mnistm`) and Adult returns features, labels and a
#: sensitive attribute (:func:`advml.data.adult.load_adult`).
REPRESENTATION_DATASETS: dict[str, DatasetInfo] = {MNIST_M.name: MNIST_M, ADULT.name: ADULT}

#: Every built-in dataset, in display order.
CATALOG: dict[str, DatasetInfo] = {
    info.name: info for info in (DIGITS, MNIST, FASHION_MNIST, CIFAR10, USPS, TOY_RING, TOY_GRID)
}

#: Accepted spellings of the built-in names.
ALIASES: dict[str, str] = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "toy_ring": "toy-ring",
    "toy_grid": "toy-grid",
}
