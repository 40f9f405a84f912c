//! Integration tests: the real application on a random port, driven over HTTP like a user,
//! against stand-ins for Meta and Shopify on 127.0.0.1.

mod admin;
mod attachments;
mod binary;
mod browser;
mod browser_pages;
mod demo;
mod erasure;
mod facebook_oauth;
mod flow;
mod health;
mod helpers;
mod legacy;
mod oauth_flow;
mod poll;
mod postgres;
mod shopify_oauth;
mod stand_in;
mod webhook;
