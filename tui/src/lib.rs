//! `streamhouse-tui`: the StreamHouse operations console and local-cluster supervisor.
//!
//! The layout follows the data: [`app`] holds the state and changes it as plain functions of
//! (state, [`action::Action`]); [`ui`] draws it; [`runtime`] is the event loop, which hands
//! [`action::Effect`]s to background tasks ([`workers`], [`supervisor`], [`demo`]) that report
//! back as actions. Nothing on the render path waits on the network.

pub mod action;
pub mod app;
pub mod cli;
pub mod connect;
pub mod demo;
pub mod palette;
pub mod runtime;
pub mod scenario;
pub mod series;
pub mod supervisor;
pub mod ui;
pub mod workers;

#[cfg(test)]
mod screen_tests;
