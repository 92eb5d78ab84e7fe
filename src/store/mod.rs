//! Every SQL statement lives here.
