//! The data files under `workflows/`: business calendars and commission plans
//! (workflow definitions join them with the order workflow). `fenrun
//! workflows check` validates them all, naming the file and line of any error.

use std::path::{Path, PathBuf};

use crate::domain::calendar::BusinessCalendar;
use crate::domain::plan::Plan;

/// The Chinese business calendar shipped inside the binary, for a machine
/// without the `workflows/` folder.
pub const SHIPPED_CN_CALENDAR: &str = include_str!("../workflows/calendars/cn.toml");

/// Checks every `calendars/*.toml` and `plans/*.toml` under `dir`; returns the files checked.
pub fn check_dir(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a folder", dir.display());
    }
    let mut checked = Vec::new();
    for path in toml_files(&dir.join("calendars"))? {
        BusinessCalendar::load(&path)?;
        checked.push(path);
    }
    for path in toml_files(&dir.join("plans"))? {
        let text = std::fs::read_to_string(&path)
            .map_err(|error| anyhow::anyhow!("reading {}: {error}", path.display()))?;
        Plan::parse(&text, &path.display().to_string())?;
        checked.push(path);
    }
    Ok(checked)
}

fn toml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_workflows_folder_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        let checked = check_dir(&dir).unwrap();
        assert!(
            checked
                .iter()
                .any(|path| path.ends_with("calendars/cn.toml"))
        );
        assert!(
            checked
                .iter()
                .any(|path| path.ends_with("plans/default.toml"))
        );
    }

    #[test]
    fn a_broken_plan_is_reported_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plans")).unwrap();
        let bad = dir.path().join("plans/bad.toml");
        std::fs::write(&bad, "name = \"x\"\ndefault_grade = \"a\"\n[grades.a]\ndisplay_name = \"A\"\nlevels = [\"1%\", \"1%\", \"1%\", \"1%\"]\n").unwrap();
        let error = check_dir(dir.path()).unwrap_err().to_string();
        assert!(error.contains("bad.toml:5"), "{error}");
    }

    #[test]
    fn the_embedded_calendar_matches_the_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/calendars/cn.toml");
        assert_eq!(std::fs::read_to_string(dir).unwrap(), SHIPPED_CN_CALENDAR);
        BusinessCalendar::from_toml_str(SHIPPED_CN_CALENDAR, "cn.toml").unwrap();
    }
}
