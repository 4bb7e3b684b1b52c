//! Where a spool's generations live on disk. A generation is one lane
//! layout: a folder of `lane-NNN` folders (and its `spool.id`), written by
//! one [`super::Spool`] with one lane count. Generation 0 is the spool
//! folder itself (the layout of every spool before generations existed);
//! generation `n > 0` is its subfolder `gen-NNNNNN`. When the lane count
//! changes (a restart or a reload with another `pool_size`), a new
//! generation starts and the older ones are delivered first, oldest first,
//! each lane in order: a client's events stay in order across the change
//! because all of them in one generation are in one lane, and a newer
//! generation is not delivered before the older ones are drained.
//!
//! Finding, creating and removing generation folders only; what is in
//! them is the spool's business.

use super::files::create_private_dir;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A generation found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// 0 for the spool folder itself, else the `gen-NNNNNN` number.
    pub number: u64,
    /// Its folder.
    pub dir: PathBuf,
    /// How many lanes it has (one past the highest `lane-NNN` found).
    pub lanes: usize,
}

/// The folder of generation `number` under the spool folder `root`.
pub fn dir_of(root: &Path, number: u64) -> PathBuf {
    if number == 0 {
        root.to_owned()
    } else {
        root.join(format!("gen-{number:06}"))
    }
}

/// The generations under `root` that have lanes, oldest first. A folder
/// that cannot be read is an error (its events must not be skipped).
pub fn find(root: &Path) -> io::Result<Vec<Generation>> {
    let mut found = Vec::new();
    let root_lanes = lane_count(root)?;
    if root_lanes > 0 {
        found.push(Generation {
            number: 0,
            dir: root.to_owned(),
            lanes: root_lanes,
        });
    }
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(number) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("gen-"))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0)
        else {
            continue;
        };
        let dir = entry.path();
        let lanes = lane_count(&dir)?;
        if lanes > 0 {
            found.push(Generation { number, dir, lanes });
        } else {
            // Created and never given a lane (a crash right after): empty.
            let _ = fs::remove_dir_all(&dir);
        }
    }
    found.sort_by_key(|g| g.number);
    Ok(found)
}

/// One past the highest `lane-NNN` folder in `dir` (0 if none).
fn lane_count(dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut count = 0;
    for entry in entries {
        let entry = entry?;
        if let Some(lane) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("lane-"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            count = count.max(lane + 1);
        }
    }
    Ok(count)
}

/// Creates the folder of a new generation after `newest` (0 when there is
/// none: the spool folder itself).
pub fn create(root: &Path, newest: Option<u64>) -> io::Result<(u64, PathBuf)> {
    let number = newest.map_or(0, |n| n + 1);
    let dir = dir_of(root, number);
    create_private_dir(&dir)?;
    Ok((number, dir))
}

/// Removes a drained generation's files: generation 0's lane folders and
/// id, another generation's whole folder.
pub fn remove(root: &Path, number: u64) -> io::Result<()> {
    if number > 0 {
        return fs::remove_dir_all(dir_of(root, number));
    }
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("lane-") {
            fs::remove_dir_all(entry.path())?;
        } else if name == "spool.id" {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_found_oldest_first_with_their_lane_counts() {
        let root = std::env::temp_dir().join(format!("herald-gens-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        assert_eq!(find(&root).ok(), Some(Vec::new()), "nothing yet");
        for lane in [0, 31] {
            create_private_dir(&root.join(format!("lane-{lane:03}"))).ok();
        }
        let (two, two_dir) = create(&root, Some(1)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(two, 2);
        create_private_dir(&two_dir.join("lane-001")).ok();
        // A generation folder without lanes is removed as empty.
        create_private_dir(&dir_of(&root, 1)).ok();
        let found = find(&root).unwrap_or_else(|e| panic!("{e}"));
        let summary: Vec<(u64, usize)> = found.iter().map(|g| (g.number, g.lanes)).collect();
        assert_eq!(summary, vec![(0, 32), (2, 2)]);
        assert!(!dir_of(&root, 1).exists());
        remove(&root, 0).unwrap_or_else(|e| panic!("{e}"));
        let found = find(&root).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].number, 2);
        let _ = fs::remove_dir_all(&root);
    }
}
