//! The columns of an interactions file, and how a user maps their own column names onto them
//! (`--col likes=upvotes`).

use std::fmt;
use std::str::FromStr;

/// A column `epitome analyze` understands. Only the text columns are needed to score with a
/// model; everything else is optional and switches on the analyses that use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    Id,
    SeekerPost,
    ResponsePost,
    ResponderId,
    SeekerId,
    CreatedAt,
    Likes,
    SeekerReplied,
    SeekerFollowed,
}

impl Column {
    pub const ALL: [Column; 9] = [
        Column::Id,
        Column::SeekerPost,
        Column::ResponsePost,
        Column::ResponderId,
        Column::SeekerId,
        Column::CreatedAt,
        Column::Likes,
        Column::SeekerReplied,
        Column::SeekerFollowed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::SeekerPost => "seeker_post",
            Column::ResponsePost => "response_post",
            Column::ResponderId => "responder_id",
            Column::SeekerId => "seeker_id",
            Column::CreatedAt => "created_at",
            Column::Likes => "likes",
            Column::SeekerReplied => "seeker_replied",
            Column::SeekerFollowed => "seeker_followed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Column {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Column::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown column '{s}': expected one of {}",
                    Column::ALL.map(|c| c.name()).join(", ")
                )
            })
    }
}

/// The name each column has in the user's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMap {
    names: [String; 9],
}

impl Default for ColumnMap {
    fn default() -> Self {
        Self {
            names: Column::ALL.map(|c| c.name().to_owned()),
        }
    }
}

/// A `--col` mapping that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("--col {0}=: give the file's column name")]
    NoName(Column),
    #[error("the file column '{name}' is mapped to both {first} and {second}")]
    Twice {
        name: String,
        first: Column,
        second: Column,
    },
}

impl ColumnMap {
    /// Applies mappings of the form `likes=upvotes` (our name = the file's name).
    pub fn with_mappings<'a>(
        mappings: impl IntoIterator<Item = &'a (Column, String)>,
    ) -> Result<Self, MappingError> {
        let mut map = Self::default();
        for (column, name) in mappings {
            if name.is_empty() {
                return Err(MappingError::NoName(*column));
            }
            map.names[column.index()] = name.clone();
        }
        for a in Column::ALL {
            for b in Column::ALL {
                if a.index() < b.index() && map.name(a) == map.name(b) {
                    return Err(MappingError::Twice {
                        name: map.name(a).to_owned(),
                        first: a,
                        second: b,
                    });
                }
            }
        }
        Ok(map)
    }

    /// The file's name for a column.
    pub fn name(&self, column: Column) -> &str {
        &self.names[column.index()]
    }

    /// How to refer to a column in messages: its name in the file, and ours where they differ.
    pub fn describe(&self, column: Column) -> String {
        if self.name(column) == column.name() {
            column.name().to_owned()
        } else {
            format!("{} (mapped to {column})", self.name(column))
        }
    }

    /// The mappings that differ from the default, as `likes=upvotes`.
    pub fn mappings(&self) -> Vec<String> {
        Column::ALL
            .into_iter()
            .filter(|&c| self.name(c) != c.name())
            .map(|c| format!("{c}={}", self.name(c)))
            .collect()
    }
}

/// Parses one `--col` value.
pub fn parse_mapping(s: &str) -> Result<(Column, String), String> {
    let (ours, theirs) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': expected OUR_NAME=FILE_COLUMN, e.g. likes=upvotes"))?;
    Ok((ours.trim().parse()?, theirs.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_rename_and_reject_clashes() {
        let m = ColumnMap::with_mappings(&[parse_mapping("likes=upvotes").unwrap()]).unwrap();
        assert_eq!(m.name(Column::Likes), "upvotes");
        assert_eq!(m.name(Column::Id), "id");
        assert_eq!(m.mappings(), vec!["likes=upvotes"]);
        assert!(parse_mapping("karma=upvotes").is_err());
        assert!(parse_mapping("likes").is_err());
        let clash = ColumnMap::with_mappings(&[parse_mapping("likes=id").unwrap()]);
        assert!(clash.unwrap_err().to_string().contains("both id and likes"));
    }
}
