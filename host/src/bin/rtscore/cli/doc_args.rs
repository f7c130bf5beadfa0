//! How strictly scenario documents are read, for every command that reads them (`run`, `plugin`,
//! `scenario ...`): the platform's own root fields beyond the built-in list
//! (`rtscore::config::fields::FOREIGN_FIELDS`) are warnings, not errors.

use clap::Args;

#[derive(Debug, Clone, Default, Args)]
pub struct DocArgs {
    /// A root field of scenario documents that belongs to the platform, not to rtscore
    /// (repeatable, or comma-separated in RTSCORE_FOREIGN_FIELDS): kept and reported as a
    /// warning instead of refused as an unknown field. Built in: name, description, owner,
    /// created_at, created_by, updated_by, tags (and _id). Keys of `config` other than
    /// `realtime_compute` are always left alone.
    #[arg(long = "foreign-field", global = true, value_name = "NAME", env = "RTSCORE_FOREIGN_FIELDS", value_delimiter = ',')]
    pub foreign_fields: Vec<String>,
}

impl DocArgs {
    /// Makes the list this process's (the first call wins), or says which name is refused.
    pub fn install(&self) -> anyhow::Result<()> {
        let names: Vec<String> = self.foreign_fields.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
        Ok(rtscore::config::fields::set_extra_foreign_fields(names)?)
    }
}
