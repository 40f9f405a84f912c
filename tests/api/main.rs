//! Integration tests: the real application on a random port, driven over HTTP like a user.

mod binary;
mod health;
mod helpers;
