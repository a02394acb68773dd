//! Credentials and region, found the way the Alibaba Cloud tooling finds them.
