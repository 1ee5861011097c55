//! `TaskProtection` through ECS task scale-in protection (issue 3, part B).
