"""streamprep: ImageNet downloads to the classic TFRecord shards, straight from the archives."""

__version__ = "0.1.0"

from .config import Options  # noqa: E402
from .convert import Summary, convert  # noqa: E402
from .errors import StreamprepError  # noqa: E402
from .plan import Layout  # noqa: E402

__all__ = ["Layout", "Options", "StreamprepError", "Summary", "__version__", "convert"]
