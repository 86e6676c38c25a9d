"""The journal writer process with a probe or a fault, for tests: they put
``[python, -I, this file, OPTION, VALUE]`` in ``storage.writer.CHILD_COMMAND``.

    --record-fsyncs FILE     after every fsync, the segment's size then (what is
                             durable) is written at the start of FILE (20 digits)
    --fail-writes-after N    writes to the journal after the first N raise ENOSPC
    --fail-fsyncs-after N    fsyncs after the first N raise EIO (the data was written)
"""

import errno
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from storage import writer  # noqa: E402

option, value, *rest = sys.argv[1:]
if option == "--record-fsyncs":
    record = os.open(value, os.O_WRONLY | os.O_CREAT, 0o644)
    real_fsync = writer._Child._fsync

    def _fsync(self):
        real_fsync(self)
        os.pwrite(record, b"%20d" % os.fstat(self.fd).st_size, 0)

    writer._Child._fsync = _fsync
elif option == "--fail-writes-after":
    budget = [int(value)]
    real_write_all = writer._Child._write_all

    def _write_all(self, data):
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        budget[0] -= 1
        real_write_all(self, data)

    writer._Child._write_all = _write_all
elif option == "--fail-fsyncs-after":
    budget = [int(value)]
    real_fsync = writer._Child._fsync

    def _fsync(self):
        if budget[0] <= 0:
            raise OSError(errno.EIO, "Input/output error")
        budget[0] -= 1
        real_fsync(self)

    writer._Child._fsync = _fsync
else:
    sys.exit(f"writer_shim: unknown option {option}")
sys.exit(writer.main(rest))
