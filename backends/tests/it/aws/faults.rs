//! Fault injection on aws-smithy-mocks.
