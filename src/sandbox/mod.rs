//! The sandbox: a local emulator of the MTS custom-face and ICE recognition-library APIs.
