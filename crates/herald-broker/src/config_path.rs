//! [`ConfigPath`]: the type of every setting that names a file or folder
//! (`data_dir`, certificate and password files, ...). A relative path
//! written in a configuration file is relative to that file's folder; one
//! given on the command line or in the environment, to the working
//! directory.
//!
//! The loader knows which values came from the file, but not which of them
//! are paths; the type knows it is a path, but not where its text came
//! from. They meet here: the loader reads the file's settings inside
//! [`relative_to`], and while it runs every `ConfigPath` read from a
//! relative text is joined to that folder. Outside it (the environment,
//! flags, defaults) the text is kept as it is.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    /// The folder relative paths are read against, while [`relative_to`]
    /// runs on this thread.
    static BASE: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Runs `read` (deserializing settings from a file in `folder`) so that
/// every relative [`ConfigPath`] it reads is joined to `folder`.
pub fn relative_to<R>(folder: &Path, read: impl FnOnce() -> R) -> R {
    /// Clears the base again, also if `read` panics.
    struct Reset(Option<PathBuf>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            BASE.with(|base| *base.borrow_mut() = previous);
        }
    }
    let previous = BASE.with(|base| base.borrow_mut().replace(folder.to_owned()));
    let _reset = Reset(previous);
    read()
}

/// A path setting (see the module docs). Derefs to [`Path`].
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigPath(PathBuf);

impl ConfigPath {
    /// The path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl Deref for ConfigPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ConfigPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl From<PathBuf> for ConfigPath {
    fn from(path: PathBuf) -> Self {
        ConfigPath(path)
    }
}

impl From<&str> for ConfigPath {
    fn from(path: &str) -> Self {
        ConfigPath(PathBuf::from(path))
    }
}

impl From<ConfigPath> for PathBuf {
    fn from(path: ConfigPath) -> Self {
        path.0
    }
}

impl PartialEq<Path> for ConfigPath {
    fn eq(&self, other: &Path) -> bool {
        self.0 == other
    }
}

impl PartialEq<&Path> for ConfigPath {
    fn eq(&self, other: &&Path) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display().fmt(f)
    }
}

impl Serialize for ConfigPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConfigPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = PathBuf::deserialize(d)?;
        // An empty text stays empty, for validation to name it.
        if path.is_relative() && !path.as_os_str().is_empty() {
            // `./data` becomes `<folder>/data`, not `<folder>/./data`.
            let path: PathBuf = path
                .components()
                .skip_while(|part| part == &std::path::Component::CurDir)
                .collect();
            let joined = BASE.with(|base| base.borrow().as_ref().map(|base| base.join(&path)));
            if let Some(joined) = joined {
                return Ok(ConfigPath(joined));
            }
        }
        Ok(ConfigPath(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        dir: ConfigPath,
        list: Vec<ConfigPath>,
        name: String,
    }

    const TEXT: &str = "dir = \"./data\"\nlist = [\"a/b\", \"/abs\", \"\"]\nname = \"data\"\n";

    #[test]
    fn relative_paths_join_the_folder_only_inside_relative_to() {
        let doc: Doc = relative_to(Path::new("/etc/herald"), || toml::from_str(TEXT))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(doc.dir, Path::new("/etc/herald/data"));
        assert_eq!(doc.list[0], Path::new("/etc/herald/a/b"));
        assert_eq!(doc.list[1], Path::new("/abs"), "absolute stays");
        assert_eq!(doc.list[2], Path::new(""), "empty stays");
        assert_eq!(doc.name, "data", "only paths change");

        let doc: Doc = toml::from_str(TEXT).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(doc.dir, Path::new("./data"), "outside: as written");
    }
}
