//! State dicts as [safetensors](https://github.com/huggingface/safetensors) files, with
//! PyTorch's tensor names, so files move both ways between retrograd and PyTorch
//! (`safetensors.torch.save_file(model.state_dict(), path)` / `load_file(path)`).
//!
//! * [`to_bytes`] / [`from_bytes`]: in memory. [`save_safetensors`] / [`load_safetensors`]: files.
//!   [`save`] / [`load_into`]: a whole [`Module`].
//! * **Dtypes.** Only `F32` and `F64` tensors are read. [`load_safetensors`] and [`from_bytes`]
//!   are strict: a file dtype that differs from the model's element type is an error naming the
//!   tensor and both dtypes. Converting is explicit: [`load_safetensors_as`] /
//!   [`from_bytes_as`] accept either dtype and convert (f64 → f32 rounds).
//! * **Atomic writes.** [`write_atomic`] writes `<path>.tmp` in the same directory, fsyncs it,
//!   renames it over `path` and fsyncs the directory, so a crash mid-save leaves either the old
//!   file or the new one, never a torn one. (Two processes saving to the same path at once
//!   share the `.tmp` name; don't do that.)
//! * **Untrusted input.** A truncated or corrupted file is an `Err`, never a panic.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use retrograd_core::{DType, Element, Error, Result, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::module::{Module, StateDict};

/// String metadata stored in the file header (`__metadata__`), e.g. a model config.
pub type Metadata = BTreeMap<String, String>;

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
    }
}

fn encode<E: Element>(t: &Tensor<E>) -> Vec<u8> {
    let data = t.contiguous_data();
    match E::DTYPE {
        DType::F32 => data
            .iter()
            .flat_map(|v| (v.as_f64() as f32).to_le_bytes())
            .collect(),
        DType::F64 => data.iter().flat_map(|v| v.as_f64().to_le_bytes()).collect(),
    }
}

/// Serializes a state dict (and optional string metadata) to safetensors bytes. Tensors are
/// stored under their state-dict names in the model's dtype (`F32` or `F64`).
///
/// ```
/// use std::collections::BTreeMap;
/// use retrograd_core::Tensor;
/// use retrograd_nn::{serialize, StateDict};
///
/// let mut sd = StateDict::<f32>::new();
/// sd.insert("weight".into(), Tensor::from_vec(vec![1.0, 2.0], &[1, 2])?);
/// let meta = BTreeMap::from([("hidden".to_string(), "2".to_string())]);
/// let bytes = serialize::to_bytes(&sd, Some(meta.clone()))?;
/// let (back, meta_back) = serialize::from_bytes::<f32>(&bytes)?;
/// assert_eq!(back["weight"].to_vec(), vec![1.0, 2.0]);
/// assert_eq!(meta_back, meta);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn to_bytes<E: Element>(sd: &StateDict<E>, metadata: Option<Metadata>) -> Result<Vec<u8>> {
    let encoded: Vec<(&String, Vec<u8>, &[usize])> = sd
        .iter()
        .map(|(name, t)| (name, encode(t), t.shape()))
        .collect();
    let mut views = Vec::with_capacity(encoded.len());
    for (name, bytes, shape) in &encoded {
        let view = TensorView::new(st_dtype(E::DTYPE), shape.to_vec(), bytes)
            .map_err(|e| Error::Checkpoint(format!("tensor '{name}': {e}")))?;
        views.push((name.as_str(), view));
    }
    let meta: Option<HashMap<String, String>> = metadata
        .filter(|m| !m.is_empty())
        .map(|m| m.into_iter().collect());
    safetensors::serialize(views, meta)
        .map_err(|e| Error::Checkpoint(format!("safetensors serialize: {e}")))
}

/// Parses safetensors bytes into a state dict and its metadata, strictly: every tensor must
/// be stored in `E`'s dtype (see the module docs). Corrupted input is an `Err`, never a panic.
pub fn from_bytes<E: Element>(bytes: &[u8]) -> Result<(StateDict<E>, Metadata)> {
    parse(bytes, false)
}

/// Like [`from_bytes`], converting `F32`/`F64` tensors to `E` whatever their stored dtype.
///
/// ```
/// use retrograd_core::Tensor;
/// use retrograd_nn::{serialize, StateDict};
/// let mut sd = StateDict::<f64>::new();
/// sd.insert("w".into(), Tensor::from_vec(vec![0.5, 0.25], &[2])?);
/// let bytes = serialize::to_bytes(&sd, None)?;
/// assert!(serialize::from_bytes::<f32>(&bytes).is_err()); // F64 file, f32 model
/// let (sd32, _) = serialize::from_bytes_as::<f32>(&bytes)?;
/// assert_eq!(sd32["w"].to_vec(), vec![0.5f32, 0.25]);
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn from_bytes_as<E: Element>(bytes: &[u8]) -> Result<(StateDict<E>, Metadata)> {
    parse(bytes, true)
}

fn parse<E: Element>(bytes: &[u8], convert: bool) -> Result<(StateDict<E>, Metadata)> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Checkpoint(format!("not a valid safetensors buffer: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::Checkpoint(format!("not a valid safetensors buffer: {e}")))?;
    let metadata: Metadata = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut sd = StateDict::new();
    for (name, view) in st.tensors() {
        let t = decode::<E>(&name, &view, convert)?;
        sd.insert(name, t);
    }
    Ok((sd, metadata))
}

fn decode<E: Element>(name: &str, view: &TensorView<'_>, convert: bool) -> Result<Tensor<E>> {
    let shape = view.shape();
    // The layout code computes row-major strides; refuse shapes whose strides overflow
    // (possible for zero-element tensors, which safetensors itself accepts).
    if shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .is_none()
    {
        return Err(Error::Checkpoint(format!(
            "tensor '{name}': shape {shape:?} is too large"
        )));
    }
    let raw = view.data();
    let wanted = st_dtype(E::DTYPE);
    let values: Vec<E> = match view.dtype() {
        d @ (Dtype::F32 | Dtype::F64) if d != wanted && !convert => {
            return Err(Error::Checkpoint(format!(
                "tensor '{name}' is stored as {d:?} but the model uses {}; load with \
                 load_safetensors_as / from_bytes_as to convert",
                E::DTYPE
            )))
        }
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|c| E::of_f64(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64))
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                E::of_f64(f64::from_le_bytes(b))
            })
            .collect(),
        other => {
            return Err(Error::Checkpoint(format!(
                "tensor '{name}' has dtype {other:?}; only F32 and F64 tensors can be loaded"
            )))
        }
    };
    Tensor::from_vec(values, shape).map_err(|e| e.context(format!("tensor '{name}'")))
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Io(format!("{what} {}: {e}", path.display()))
}

/// The temporary file [`write_atomic`] writes before renaming: `<path>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Writes `bytes` to `path` atomically: into `<path>.tmp` in the same directory, fsynced,
/// then renamed over `path` (and the directory fsynced). A crash at any point leaves the
/// previous file intact; on error the temporary file is removed.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("retrograd-doc-atomic-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("x.bin");
/// retrograd_nn::serialize::write_atomic(&path, b"hello")?;
/// assert_eq!(std::fs::read(&path)?, b"hello");
/// assert!(!retrograd_nn::serialize::tmp_path(&path).exists());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, "create", e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, "write", e))?;
        f.sync_all().map_err(|e| io_err(&tmp, "fsync", e))?;
        fs::rename(&tmp, path).map_err(|e| io_err(path, "rename onto", e))
    })();
    if let Err(e) = written {
        if tmp.is_file() {
            let _ = fs::remove_file(&tmp);
        }
        return Err(e);
    }
    // Make the rename itself durable. Directories cannot be opened for syncing on every
    // platform; the data is already safe in the renamed file, so this is best effort.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Saves a state dict as a safetensors file (atomically, see [`write_atomic`]).
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_nn::{serialize, Linear, Module};
/// let fc = Linear::<f32>::new(3, 2, true, &mut StdRng::seed_from_u64(0))?;
/// let path = std::env::temp_dir().join(format!("retrograd-doc-sd-{}.safetensors", std::process::id()));
/// serialize::save_safetensors(&fc.state_dict(), &path, None)?;
/// let (sd, _meta) = serialize::load_safetensors::<f32>(&path)?;
/// assert_eq!(sd["weight"].to_vec(), fc.weight.to_vec());
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn save_safetensors<E: Element>(
    sd: &StateDict<E>,
    path: impl AsRef<Path>,
    metadata: Option<Metadata>,
) -> Result<()> {
    write_atomic(path.as_ref(), &to_bytes(sd, metadata)?)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| io_err(path, "read", e))
}

/// Loads a safetensors file as a state dict plus metadata, strictly typed (see the module
/// docs); errors name the file.
pub fn load_safetensors<E: Element>(path: impl AsRef<Path>) -> Result<(StateDict<E>, Metadata)> {
    let path = path.as_ref();
    from_bytes(&read(path)?).map_err(|e| e.context(path.display().to_string()))
}

/// Like [`load_safetensors`], converting `F32`/`F64` tensors to `E`.
pub fn load_safetensors_as<E: Element>(path: impl AsRef<Path>) -> Result<(StateDict<E>, Metadata)> {
    let path = path.as_ref();
    from_bytes_as(&read(path)?).map_err(|e| e.context(path.display().to_string()))
}

/// Saves a module's state dict to `path` (atomically).
pub fn save<E: Element, M: Module<E> + ?Sized>(module: &M, path: impl AsRef<Path>) -> Result<()> {
    save_safetensors(&module.state_dict(), path, None)
}

/// Loads `path` into a module's parameters through
/// [`Module::load_state_dict`] (`strict`: every name must match both ways; shapes always must),
/// returning the file's metadata. The dtype must match the module's (no silent conversion).
///
/// ```
/// use rand::{rngs::StdRng, SeedableRng};
/// use retrograd_nn::{serialize, Linear};
/// let mut rng = StdRng::seed_from_u64(0);
/// let a = Linear::<f64>::new(3, 2, true, &mut rng)?;
/// let b = Linear::<f64>::new(3, 2, true, &mut rng)?;
/// let path = std::env::temp_dir().join(format!("retrograd-doc-mod-{}.safetensors", std::process::id()));
/// serialize::save(&a, &path)?;
/// serialize::load_into(&b, &path, true)?;
/// assert_eq!(a.weight.to_vec(), b.weight.to_vec());
/// let wider = Linear::<f64>::new(4, 2, true, &mut rng)?;
/// assert!(serialize::load_into(&wider, &path, true).is_err()); // weight [2, 3] vs [2, 4]
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), retrograd_core::Error>(())
/// ```
pub fn load_into<E: Element, M: Module<E> + ?Sized>(
    module: &M,
    path: impl AsRef<Path>,
    strict: bool,
) -> Result<Metadata> {
    let path = path.as_ref();
    let (sd, meta) = load_safetensors::<E>(path)?;
    module
        .load_state_dict(&sd, strict)
        .map_err(|e| e.context(path.display().to_string()))?;
    Ok(meta)
}
