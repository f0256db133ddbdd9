//! The backends this binary knows. Adding one is a crate plus one line here.

use promote_settings::Registry;

/// Every built-in backend kind.
pub(crate) fn registry() -> Registry {
    let mut registry = Registry::new();
    promote_local::register(&mut registry);
    promote_object_store::register(&mut registry);
    promote_opendal::register(&mut registry);
    registry
}
