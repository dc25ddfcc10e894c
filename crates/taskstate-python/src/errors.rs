//! taskstate errors as Python exceptions.
//!
//! The classes live in `pynenc_taskstate/errors.py` so they can inherit from
//! both pynenc's `StateBackendError` and the builtin a caller already
//! catches: a missing result is a `KeyError` (pynenc's own backends raise
//! one), bad input a `ValueError`, a lost server a `ConnectionError`.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use taskstate::{Error, ErrorKind};

static CLASSES: PyOnceLock<Vec<(ErrorKind, Py<PyType>)>> = PyOnceLock::new();

const NAMES: [(ErrorKind, &str); 7] = [
    (ErrorKind::NotFound, "NotFoundError"),
    (ErrorKind::Corrupt, "CorruptDataError"),
    (ErrorKind::Unavailable, "UnavailableError"),
    (ErrorKind::InvalidInput, "InvalidInputError"),
    (ErrorKind::Unsupported, "UnsupportedError"),
    (ErrorKind::Incompatible, "IncompatibleStoreError"),
    (ErrorKind::Storage, "StorageError"),
];

fn class(py: Python<'_>, kind: ErrorKind) -> PyResult<Bound<'_, PyType>> {
    let classes = CLASSES.get_or_try_init(py, || {
        let module = py.import("pynenc_taskstate.errors")?;
        NAMES
            .iter()
            .map(|(k, name)| Ok((*k, module.getattr(*name)?.cast_into::<PyType>()?.unbind())))
            .collect::<PyResult<Vec<_>>>()
    })?;
    classes
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, c)| c.bind(py).clone())
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err(format!("no class for {kind:?}")))
}

fn raise(py: Python<'_>, kind: ErrorKind, message: String) -> PyErr {
    match class(py, kind) {
        Ok(cls) => PyErr::from_type(cls, message),
        Err(e) => e,
    }
}

/// The Python exception for an engine error: its kind's class, its message.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    raise(py, e.kind(), e.to_string())
}

/// An `InvalidInputError` (a `ValueError`) with `message`.
pub fn invalid(py: Python<'_>, message: String) -> PyErr {
    raise(py, ErrorKind::InvalidInput, message)
}
