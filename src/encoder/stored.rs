//! A model's tensors read from safetensors files one at a time, as its layers ask for them.
//!
//! Loading a bundle used to read both files whole (the pretrained encoder's 90 MB, the
//! fine-tuned tensors converted to f32) and keep them alive while every layer packed its own
//! copy of its weight: the load peaked at 352 MB, and mimalloc keeps a peak for the life of the
//! process. Here only the files' headers are read up front; a tensor's bytes are read when the
//! model asks for it and dropped once its layer has made what it keeps. A stored tensor that
//! several model names share (the word embeddings of the seeker and of a responder whose
//! embeddings were not fine-tuned) is read once and handed to each of them.

use candle_core::{DType, Device, Result, Tensor};
use safetensors::tensor::TensorInfo;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One safetensors file: its header, and the file to read tensors from.
pub struct SafetensorsFile {
    path: PathBuf,
    file: Mutex<File>,
    /// Where the tensor bytes start: after the 8-byte length and the JSON header.
    data_start: u64,
    infos: HashMap<String, TensorInfo>,
}

impl SafetensorsFile {
    /// Reads and validates the header (offsets inside the file, sizes that fit the shapes).
    /// The mapping lets the `safetensors` crate check the whole file's layout while touching
    /// only the header's pages; tensor bytes are read later with plain reads.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        // SAFETY: the mapping is read-only and private to this function, dropped before it
        // returns, and only read as a byte slice by the header check; the bundle's files were
        // hash-checked just before (a file cut short while mapped would fault, as any mapping).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let infos = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            data_start: 8 + header_len as u64,
            infos,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.infos.keys().map(String::as_str)
    }

    /// The tensor `name` as stored (its own dtype), on the CPU.
    fn read(&self, name: &str) -> Result<Tensor> {
        let info = self.infos.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: no tensor named {name}", self.path.display()))
        })?;
        let dtype = DType::try_from(info.dtype)?;
        let (start, end) = info.data_offsets;
        // f32 tensors (every pretrained one) are read straight into the tensor's own buffer:
        // a byte buffer beside it would double the 47 MB word-embedding table for a moment,
        // and the allocator keeps that moment's pages.
        #[cfg(target_endian = "little")]
        if dtype == DType::F32 {
            let mut values = vec![0f32; (end - start) / 4];
            // SAFETY: any bytes are a valid f32, the slice covers exactly `values`, and the
            // file's little-endian order is the machine's.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), values.len() * 4)
            };
            self.read_at(name, start, bytes)?;
            return Tensor::from_vec(values, info.shape.as_slice(), &Device::Cpu);
        }
        let mut bytes = vec![0u8; end - start];
        self.read_at(name, start, &mut bytes)?;
        Tensor::from_raw_buffer(&bytes, dtype, &info.shape, &Device::Cpu)
    }

    /// Fills `bytes` from offset `start` of the tensor data.
    fn read_at(&self, name: &str, start: usize, bytes: &mut [u8]) -> Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(self.data_start + start as u64))
            .and_then(|_| file.read_exact(bytes))
            .map_err(|e| {
                candle_core::Error::Msg(format!(
                    "{}: cannot read tensor {name}: {e}",
                    self.path.display()
                ))
            })
    }
}

/// Where a model name's tensor is stored: a file (index into the files) and its name there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredAt {
    pub file: usize,
    pub name: String,
}

/// A model's tensors by model name, read from their files on request.
pub struct StoredTensors {
    files: Vec<SafetensorsFile>,
    names: HashMap<String, StoredAt>,
    /// Stored tensors that more than one model name maps to, with the requests still
    /// expected for each; dropped after the last.
    shared: Mutex<HashMap<StoredAt, (Tensor, usize)>>,
    requests: HashMap<StoredAt, usize>,
}

impl StoredTensors {
    pub fn new(files: Vec<SafetensorsFile>, names: HashMap<String, StoredAt>) -> Self {
        let mut requests: HashMap<StoredAt, usize> = HashMap::new();
        for at in names.values() {
            *requests.entry(at.clone()).or_default() += 1;
        }
        Self {
            files,
            names,
            shared: Mutex::new(HashMap::new()),
            requests,
        }
    }

    /// Every tensor of `file`, under its own name.
    pub fn names_in(files: &[SafetensorsFile], file: usize) -> HashMap<String, StoredAt> {
        files[file]
            .names()
            .map(|n| {
                (
                    n.to_owned(),
                    StoredAt {
                        file,
                        name: n.to_owned(),
                    },
                )
            })
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// The tensor stored under model name `name`, in its stored dtype; `None` when the files
    /// hold no such name.
    pub fn get(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(at) = self.names.get(name) else {
            return Ok(None);
        };
        let expected = self.requests.get(at).copied().unwrap_or(1);
        if expected <= 1 {
            return self.files[at.file].read(&at.name).map(Some);
        }
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tensor, left)) = shared.get_mut(at) {
            let tensor = tensor.clone();
            *left -= 1;
            if *left == 0 {
                shared.remove(at);
            }
            return Ok(Some(tensor));
        }
        let tensor = self.files[at.file].read(&at.name)?;
        shared.insert(at.clone(), (tensor.clone(), expected - 1));
        Ok(Some(tensor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(tensors: &[(&str, Tensor)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        (dir, path)
    }

    #[test]
    fn tensors_read_back_as_stored_in_their_own_dtype() {
        let a = Tensor::arange(0f32, 12., &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let h = a.to_dtype(DType::F16).unwrap();
        let (_dir, path) = file_with(&[("a", a.clone()), ("h", h)]);
        let files = vec![SafetensorsFile::open(&path).unwrap()];
        let names = StoredTensors::names_in(&files, 0);
        let stored = StoredTensors::new(files, names);
        let got = stored.get("a").unwrap().unwrap();
        assert_eq!(got.dims(), &[3, 4]);
        assert_eq!(got.to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        let got = stored.get("h").unwrap().unwrap();
        assert_eq!(got.dtype(), DType::F16);
        assert_eq!(
            got.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap(),
            a.to_vec2::<f32>().unwrap()
        );
        assert!(stored.get("absent").unwrap().is_none());
        assert!(!stored.contains("absent"));
    }

    #[test]
    fn a_tensor_under_two_names_is_read_once_and_released_after_the_last() {
        let e = Tensor::ones((5, 2), DType::F32, &Device::Cpu).unwrap();
        let (_dir, path) = file_with(&[("embeddings", e)]);
        let files = vec![SafetensorsFile::open(&path).unwrap()];
        let at = StoredAt {
            file: 0,
            name: "embeddings".into(),
        };
        let names = HashMap::from([
            ("seeker.e".to_owned(), at.clone()),
            ("responder.e".to_owned(), at),
        ]);
        let stored = StoredTensors::new(files, names);
        let first = stored.get("seeker.e").unwrap().unwrap();
        assert_eq!(stored.shared.lock().unwrap().len(), 1);
        let second = stored.get("responder.e").unwrap().unwrap();
        assert!(stored.shared.lock().unwrap().is_empty());
        // One storage, not two copies.
        let address = |t: &Tensor| &*t.storage_and_layout().0 as *const _ as usize;
        assert_eq!(address(&first), address(&second));
    }

    #[test]
    fn a_damaged_file_is_refused() {
        let e = Tensor::ones((5, 2), DType::F32, &Device::Cpu).unwrap();
        let (_dir, path) = file_with(&[("e", e)]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        assert!(SafetensorsFile::open(&path).is_err());
    }
}
