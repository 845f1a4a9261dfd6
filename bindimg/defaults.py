"""The defaults and choices the command line shows (in -h and the man pages).

They live here, in a module that imports nothing, so that the CLI builds its options without
importing the modules that use them (the registry client, the embedder, the export
destinations): `bindimg --version`, `-h` and shell completion stay fast. Those modules
import their values from here.
"""

DEFAULT_JOBS = 8  # parallel registry look-ups (`--jobs`)
DEFAULT_RETRY = 3  # retries of a transient registry failure (`--retry`)
DEFAULT_TIMEOUT = 60.0  # seconds per registry request (`--timeout`)
DEFAULT_LOCK = "bindimg.lock"  # `lock --lock`
DEFAULT_STORE = "/usr/lib/containers/storage"  # the embedded store inside a root (`--store`)
DRIVERS = ("overlay", "vfs")  # storage drivers of the embedded store (`--driver`)
FLATTEN_MODES = ("auto", "always", "never")  # `add --embed --flatten`
TRANSPORTS = "containers-storage:[…], oci:DIR, oci-archive:FILE or docker://MIRROR[/PREFIX]"  # `export --to`
