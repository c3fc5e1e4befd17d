//! The data files under `workflows/`: workflow definitions (`*.toml` directly
//! in the folder), scheduled jobs (`schedules.toml`), business calendars
//! (`calendars/`) and commission plans (`plans/`). `fenrun workflows check`
//! validates them all, naming the file and line of any error.

use std::path::{Path, PathBuf};

use crate::domain::calendar::BusinessCalendar;
use crate::domain::plan::Plan;
use crate::engine::definition::{
    DECLARATION_FILE_NAME, SCHEDULES_FILE_NAME, Schedules, WorkflowDefinition,
};

/// The Chinese business calendar shipped inside the binary, for a machine
/// without the `workflows/` folder.
pub const SHIPPED_CN_CALENDAR: &str = include_str!("../../../workflows/calendars/cn.toml");

/// Checks every `calendars/*.toml` and `plans/*.toml` under `dir`, every
/// workflow definition directly in it (queues unique across them) and its
/// `schedules.toml` if present; returns the files checked.
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
    for definition in WorkflowDefinition::load_all(dir)? {
        checked.push(PathBuf::from(definition.file()));
    }
    let declaration = dir.join(DECLARATION_FILE_NAME);
    if declaration.is_file() {
        let text = std::fs::read_to_string(&declaration)
            .map_err(|error| anyhow::anyhow!("reading {}: {error}", declaration.display()))?;
        crate::engine::declaration::Layouts::parse(&text, &declaration.display().to_string())?;
        checked.push(declaration);
    }
    let month_close = dir.join(crate::engine::month_close::SETTINGS_FILE_NAME);
    if month_close.is_file() {
        crate::engine::month_close::MonthCloseSettings::load(dir)?;
        checked.push(month_close);
    }
    let reconciliation = dir.join(crate::engine::reconciliation::SETTINGS_FILE_NAME);
    if reconciliation.is_file() {
        crate::engine::reconciliation::ReconciliationSettings::load(dir)?;
        checked.push(reconciliation);
    }
    let schedules = dir.join(SCHEDULES_FILE_NAME);
    if schedules.is_file() {
        Schedules::load(&schedules)?;
        checked.push(schedules);
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
        assert!(
            checked
                .iter()
                .any(|path| path.ends_with("declaration.toml"))
        );
    }

    #[test]
    fn the_shipped_workflows_folder_includes_the_order_workflow_and_schedules() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        let checked = check_dir(&dir).unwrap();
        assert!(
            checked
                .iter()
                .any(|path| path.ends_with("workflows/order-settlement.toml"))
        );
        assert!(
            checked
                .iter()
                .any(|path| path.ends_with("workflows/schedules.toml"))
        );
    }

    #[test]
    fn a_broken_workflow_definition_is_reported_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "name = \"bad\"\ntrigger = { event = \"order.confirmed\" }\n\
             time_zone = \"Asia/Shanghai\"\n\n[[steps]]\nname = \"pay\"\nkind = \"teleport\"\n",
        )
        .unwrap();
        let error = check_dir(dir.path()).unwrap_err().to_string();
        assert!(error.contains("bad.toml:7: unknown step kind"), "{error}");
    }

    #[test]
    fn a_bad_step_parameter_is_reported_by_the_check_as_serve_would_refuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let text = crate::engine::definition::SHIPPED_WITHDRAWAL
            .replace("poll_interval_ms = 15000", "poll_interval_ms = 0");
        std::fs::write(dir.path().join("withdrawal.toml"), &text).unwrap();
        let line = text
            .lines()
            .position(|line| line == "poll_interval_ms = 0")
            .unwrap()
            + 1;
        let error = check_dir(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(&format!("withdrawal.toml:{line}: `poll_interval_ms`")),
            "{error}"
        );
    }

    #[test]
    fn a_broken_schedules_file_is_reported_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("schedules.toml"),
            "time_zone = \"Asia/Shanghai\"\n\n[[schedules]]\nname = \"sweep\"\n\
             job = \"release_due_holds\"\ncron = \"* * * * *\"\n",
        )
        .unwrap();
        let error = check_dir(dir.path()).unwrap_err().to_string();
        assert!(error.contains("schedules.toml:6: invalid cron"), "{error}");
    }

    #[test]
    fn a_definition_naming_a_calendar_missing_from_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("order-settlement.toml"),
            crate::engine::definition::SHIPPED_ORDER_SETTLEMENT,
        )
        .unwrap();
        let error = check_dir(dir.path()).unwrap_err().to_string();
        assert!(error.contains("order-settlement.toml:"), "{error}");
        assert!(
            error.contains("calendars/cn.toml does not exist"),
            "{error}"
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
