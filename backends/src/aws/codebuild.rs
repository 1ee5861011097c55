//! `BuildRunner` on AWS CodeBuild (issue 3, part B).
