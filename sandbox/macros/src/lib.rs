//! `#[sandbox_test]`: runs a test's body inside a fresh sandbox. Re-exported as
//! `sandbox::sandbox_test`; see that crate for the documentation.

#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr};

/// Runs the test's body in a fresh sandbox. Options: `hostname = "…"`, `network = "loopback" | "none" |
/// "host"`, `timeout = "20s"` (also `ms`, `m`), `env(KEY = "value", …)`, `rootfs = "alpine:3.20"` (any
/// version `fetch` accepts), `rootfs_dir = "path"` (relative to the crate's `CARGO_MANIFEST_DIR`; or
/// any `&'static str` expression, e.g. `concat!(env!("CARGO_TARGET_TMPDIR"), "/tree")`),
/// `sys`, `privileged` (the body is the host's root: `Builder::privileged`), `mount(bind = "host
/// path", at = "/path"[, read_only])`, `mount(tmpfs = "/path"[, size = "16M"])`, `memory = "64M"`,
/// `pids = 64`, `cpus = 0.5`, `writable_size = "2G"`, `requires = "limits, switch, userns"`. An
/// `async fn` runs on a current-thread tokio runtime (the crate needs tokio with feature `rt`). See
/// `sandbox::sandbox_test`.
#[proc_macro_attribute]
pub fn sandbox_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let original: TokenStream2 = item.clone().into();
    let func = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => return with_error(original, e),
    };
    let mut options = Options { krate: sandbox_path(), ..Options::default() };
    let parser = syn::meta::parser(|meta| options.parse(meta));
    if let Err(e) = syn::parse::Parser::parse(parser, args) {
        return with_error(original, e);
    }
    match expand(func, options) {
        Ok(tokens) => tokens.into(),
        Err(e) => with_error(original, e),
    }
}

/// The function as written (so that an IDE still sees it), plus the error at the offending tokens.
fn with_error(original: TokenStream2, e: syn::Error) -> TokenStream {
    let error = e.to_compile_error();
    quote!(#original #error).into()
}

/// The path of the `sandbox` crate as the calling crate names it (`::sandbox`, or `::sb` for
/// `sb = { package = "sandbox", … }`), from its Cargo.toml.
fn sandbox_path() -> TokenStream2 {
    use proc_macro_crate::{FoundCrate, crate_name};
    match crate_name("sandbox") {
        Ok(FoundCrate::Name(name)) => {
            let ident = proc_macro2::Ident::new(&name, Span::call_site());
            quote!(::#ident)
        }
        // `Itself` is the sandbox package's own tests and examples, which reach it as `sandbox`.
        Ok(FoundCrate::Itself) | Err(_) => quote!(::sandbox),
    }
}

#[derive(Default)]
struct Options {
    /// How the calling crate reaches `sandbox`.
    krate: TokenStream2,
    hostname: Option<LitStr>,
    network: Option<(LitStr, TokenStream2)>,
    timeout_ms: Option<(LitStr, u64)>,
    env: Vec<(LitStr, LitStr)>,
    rootfs: Option<LitStr>,
    /// The directory, as an expression of type `&'static str` (a literal made absolute already).
    rootfs_dir: Option<TokenStream2>,
    sys: bool,
    privileged: bool,
    mounts: Vec<TokenStream2>,
    memory: Option<u64>,
    pids: Option<u64>,
    cpus: Option<f64>,
    writable_size: Option<u64>,
    requires: Vec<LitStr>,
}

const KNOWN: &str = "hostname, network, timeout, env(...), rootfs, rootfs_dir, sys, privileged, mount(...), memory, pids, cpus, writable_size, requires";

/// What `requires = "…"` may name: what a machine may lack.
const REQUIREMENTS: [&str; 3] = ["limits", "switch", "userns"];

/// A host path as written in the attribute: absolute as is, relative to the crate's manifest.
fn host_path(lit: &LitStr) -> TokenStream2 {
    if lit.value().starts_with('/') {
        quote!(#lit)
    } else {
        quote!(::core::concat!(::core::env!("CARGO_MANIFEST_DIR"), "/", #lit))
    }
}

/// "16M", "512K", "1G" or a plain byte count.
/// `sandbox-run`'s sizes, but zero is malformed here: every size option refuses it.
fn parse_size(s: &str) -> Option<u64> {
    sandbox_validate::size_bytes(s).filter(|n| *n > 0)
}

impl Options {
    fn parse(&mut self, meta: syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
        let name = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
        match name.as_str() {
            "hostname" => {
                let lit: LitStr = meta.value()?.parse()?;
                // The builder's own check, so that a name the builder refuses never compiles.
                sandbox_validate::hostname(&lit.value())
                    .map_err(|reason| syn::Error::new(lit.span(), format!("invalid hostname: {reason}")))?;
                set(&mut self.hostname, lit, &meta)
            }
            "network" => {
                let lit: LitStr = meta.value()?.parse()?;
                let variant = match lit.value().as_str() {
                    "loopback" => quote!(Loopback),
                    "none" => quote!(None),
                    "host" => quote!(Host),
                    _ => return Err(syn::Error::new(lit.span(), "expected \"loopback\", \"none\" or \"host\"")),
                };
                let span = lit.span();
                set(
                    &mut self.network,
                    (lit, {
                        let krate = &self.krate;
                        quote_spanned!(span=> #krate::Network::#variant)
                    }),
                    &meta,
                )
            }
            "timeout" => {
                let lit: LitStr = meta.value()?.parse()?;
                let ms = parse_duration_ms(&lit.value()).ok_or_else(|| {
                    syn::Error::new(lit.span(), "expected a duration such as \"500ms\", \"20s\" or \"2m\"")
                })?;
                set(&mut self.timeout_ms, (lit, ms), &meta)
            }
            "env" => meta.parse_nested_meta(|inner| {
                let key = inner
                    .path
                    .get_ident()
                    .map(ToString::to_string)
                    .ok_or_else(|| inner.error("expected `NAME = \"value\"`"))?;
                let value: LitStr = inner.value()?.parse()?;
                sandbox_validate::env_key(&key).map_err(|r| inner.error(format!("invalid variable name: {r}")))?;
                sandbox_validate::env_value(&value.value())
                    .map_err(|r| syn::Error::new(value.span(), format!("invalid value: {r}")))?;
                self.env.push((LitStr::new(&key, inner.path.span()), value));
                Ok(())
            }),
            "rootfs" => {
                let lit: LitStr = meta.value()?.parse()?;
                let v = lit.value();
                let version = v.strip_prefix("alpine:").unwrap_or("");
                if !valid_version(version) {
                    return Err(syn::Error::new(
                        lit.span(),
                        "expected \"alpine:X.Y.Z\", \"alpine:X.Y\" or \"alpine:latest-stable\" (use rootfs_dir = \"path\" for an unpacked tree)",
                    ));
                }
                if self.rootfs_dir.is_some() {
                    return Err(meta.error("`rootfs` and `rootfs_dir` exclude each other"));
                }
                set(&mut self.rootfs, lit, &meta)
            }
            "rootfs_dir" => {
                // A string literal (relative to the crate), or any `&'static str` expression, such as
                // `concat!(env!("CARGO_TARGET_TMPDIR"), "/tree")` for a tree a test builds.
                let expr: syn::Expr = meta.value()?.parse()?;
                let dir = match &expr {
                    syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(lit), .. }) => {
                        if lit.value().is_empty() {
                            return Err(syn::Error::new(lit.span(), "expected a directory path"));
                        }
                        host_path(lit)
                    }
                    other => quote!(#other),
                };
                if self.rootfs.is_some() {
                    return Err(meta.error("`rootfs` and `rootfs_dir` exclude each other"));
                }
                set(&mut self.rootfs_dir, dir, &meta)
            }
            "sys" => {
                self.sys = true;
                Ok(())
            }
            "privileged" => {
                self.privileged = true;
                Ok(())
            }
            "memory" => {
                let bytes = size_value(&meta, "the memory limit", sandbox_validate::memory_limit)?;
                set(&mut self.memory, bytes, &meta)
            }
            "writable_size" => {
                let bytes = size_value(&meta, "the writable size", sandbox_validate::writable_size)?;
                set(&mut self.writable_size, bytes, &meta)
            }
            "pids" => {
                let lit: syn::LitInt = meta.value()?.parse()?;
                let n: u64 = lit.base10_parse()?;
                sandbox_validate::pids_limit(n)
                    .map_err(|r| syn::Error::new(lit.span(), format!("the pids limit {r}")))?;
                set(&mut self.pids, n, &meta)
            }
            "requires" => {
                let lit: LitStr = meta.value()?.parse()?;
                for part in lit.value().split(',').map(str::trim) {
                    if !REQUIREMENTS.contains(&part) {
                        return Err(syn::Error::new(
                            lit.span(),
                            format!(
                                "unknown requirement `{part}`; expected one or more of: {}",
                                REQUIREMENTS.join(", ")
                            ),
                        ));
                    }
                    self.requires.push(LitStr::new(part, lit.span()));
                }
                Ok(())
            }
            "cpus" => {
                let value = meta.value()?;
                let lit: syn::Lit = value.parse()?;
                let n: f64 = match &lit {
                    syn::Lit::Float(f) => f.base10_parse()?,
                    syn::Lit::Int(i) => i.base10_parse::<u32>()? as f64,
                    _ => return Err(syn::Error::new(lit.span(), "expected a number of CPUs, such as 0.5 or 2")),
                };
                sandbox_validate::cpus(n).map_err(|r| syn::Error::new(lit.span(), format!("invalid cpus: {r}")))?;
                set(&mut self.cpus, n, &meta)
            }
            "mount" => {
                let (mut bind, mut tmpfs, mut at, mut size, mut read_only) = (None, None, None, None, false);
                let span = meta.path.span();
                meta.parse_nested_meta(|inner| {
                    let key = inner.path.get_ident().map(ToString::to_string).unwrap_or_default();
                    match key.as_str() {
                        "bind" => bind = Some(inner.value()?.parse::<LitStr>()?),
                        "tmpfs" => tmpfs = Some(inner.value()?.parse::<LitStr>()?),
                        "at" => at = Some(inner.value()?.parse::<LitStr>()?),
                        "size" => {
                            let lit: LitStr = inner.value()?.parse()?;
                            let bytes = parse_size(&lit.value())
                                .ok_or_else(|| syn::Error::new(lit.span(), "expected a size above zero such as \"16M\", \"512K\" or \"1G\""))?;
                            sandbox_validate::tmpfs_size(bytes)
                                .map_err(|r| syn::Error::new(lit.span(), format!("the size {r}")))?;
                            size = Some(bytes);
                        }
                        "read_only" => read_only = true,
                        _ => return Err(inner.error("expected bind = \"host path\", at = \"/path\", read_only, or tmpfs = \"/path\", size = \"16M\"")),
                    }
                    Ok(())
                })?;
                let abs = |l: &LitStr| -> syn::Result<()> {
                    sandbox_validate::path_inside(&l.value())
                        .map_err(|r| syn::Error::new(l.span(), format!("invalid mount target: {r}")))
                };
                let size_tokens = match size {
                    Some(n) => quote!(::core::option::Option::Some(#n)),
                    None => quote!(::core::option::Option::None),
                };
                let mount = match (bind, tmpfs, at) {
                    (Some(source), None, Some(at)) => {
                        abs(&at)?;
                        if size.is_some() {
                            return Err(syn::Error::new(span, "only a tmpfs has a size"));
                        }
                        let source = host_path(&source);
                        {
                            let krate = &self.krate;
                            quote!(#krate::harness::MountOption::Bind { source: #source, target: #at, read_only: #read_only })
                        }
                    }
                    (None, Some(target), None) => {
                        abs(&target)?;
                        {
                            let krate = &self.krate;
                            quote!(#krate::harness::MountOption::Tmpfs { target: #target, size: #size_tokens, read_only: #read_only })
                        }
                    }
                    _ => {
                        return Err(syn::Error::new(
                            span,
                            "expected mount(bind = \"host path\", at = \"/path\"[, read_only]) or mount(tmpfs = \"/path\"[, size = \"16M\"])",
                        ));
                    }
                };
                self.mounts.push(mount);
                Ok(())
            }
            _ => Err(meta.error(format!("unknown #[sandbox_test] option; expected one of: {KNOWN}"))),
        }
    }
}

/// A size option's value (`"64M"`), checked by `valid`, whose reason follows `what` in the error.
fn size_value(
    meta: &syn::meta::ParseNestedMeta<'_>,
    what: &str,
    valid: fn(u64) -> Result<(), &'static str>,
) -> syn::Result<u64> {
    let lit: LitStr = meta.value()?.parse()?;
    let bytes = parse_size(&lit.value())
        .ok_or_else(|| syn::Error::new(lit.span(), "expected a size such as \"64M\" or \"1G\""))?;
    valid(bytes).map_err(|r| syn::Error::new(lit.span(), format!("{what} {r}")))?;
    Ok(bytes)
}

fn set<T>(slot: &mut Option<T>, value: T, meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error("this option is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn valid_version(v: &str) -> bool {
    if v == "latest-stable" {
        return true;
    }
    let parts: Vec<&str> = v.split('.').collect();
    (parts.len() == 2 || parts.len() == 3)
        && parts.iter().all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_duration_ms(s: &str) -> Option<u64> {
    sandbox_validate::duration_ms(s)
}

fn expand(func: ItemFn, options: Options) -> syn::Result<TokenStream2> {
    if let Some(attr) = func.attrs.iter().find(|a| a.path().is_ident("test")) {
        return Err(syn::Error::new(
            attr.path().span(),
            "#[sandbox_test] already makes this a test: remove this #[test]",
        ));
    }
    if let Some(a) = func.attrs.iter().find(|a| a.path().segments.last().is_some_and(|s| s.ident == "test")) {
        return Err(syn::Error::new(
            a.path().span(),
            "#[sandbox_test] already makes this a test (and runs an async body on its own runtime): remove this attribute",
        ));
    }
    if !func.sig.inputs.is_empty() {
        return Err(syn::Error::new(func.sig.inputs.span(), "#[sandbox_test] functions take no arguments"));
    }
    if !func.sig.generics.params.is_empty() {
        return Err(syn::Error::new(func.sig.generics.span(), "#[sandbox_test] functions cannot be generic"));
    }
    let krate = &options.krate;
    // `#[should_panic]`, and its `expected` text: the harness must know that a failure of the
    // sandbox is not the panic the test expects.
    let should_panic = match func.attrs.iter().find(|a| a.path().is_ident("should_panic")) {
        Some(attr) => match should_panic_expected(attr)? {
            Some(text) => quote!(::core::option::Option::Some(::core::option::Option::Some(#text))),
            None => quote!(::core::option::Option::Some(::core::option::Option::None)),
        },
        None => quote!(::core::option::Option::None),
    };
    let is_async = func.sig.asyncness.is_some();
    let ItemFn { attrs, vis, sig, block } = func;
    let name = &sig.ident;
    let output = &sig.output;
    let some_str = |o: &Option<LitStr>| match o {
        Some(l) => quote!(::core::option::Option::Some(#l)),
        None => quote!(::core::option::Option::None),
    };
    let hostname = some_str(&options.hostname);
    let network = match &options.network {
        Some((_, v)) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    };
    let timeout = match options.timeout_ms {
        Some((_, ms)) => quote!(::core::option::Option::Some(::std::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let env = options.env.iter().map(|(k, v)| quote!((#k, #v)));
    let rootfs = match (&options.rootfs, &options.rootfs_dir) {
        (Some(spec), _) => {
            let version = LitStr::new(spec.value().trim_start_matches("alpine:"), spec.span());
            quote!(#krate::harness::RootfsOption::Alpine(#version))
        }
        (None, Some(dir)) => quote!(#krate::harness::RootfsOption::Dir(#dir)),
        (None, None) => quote!(#krate::harness::RootfsOption::Default),
    };
    let sys = options.sys;
    let privileged = options.privileged;
    let mounts = &options.mounts;
    let opt = |v: Option<TokenStream2>| match v {
        Some(t) => quote!(::core::option::Option::Some(#t)),
        None => quote!(::core::option::Option::None),
    };
    let memory = opt(options.memory.map(|m| quote!(#m)));
    let pids = opt(options.pids.map(|p| quote!(#p)));
    let cpus = opt(options.cpus.map(|c| quote!(#c)));
    let writable_size = opt(options.writable_size.map(|w| quote!(#w)));
    let requires = &options.requires;
    // An async body runs on a current-thread tokio runtime built inside the sandbox, from the
    // calling crate's own tokio (feature `rt`).
    let body = if is_async {
        quote!({
            ::tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("#[sandbox_test]: build a tokio runtime for the async test")
                .block_on(async move #block)
        })
    } else {
        quote!(#block)
    };
    let span = Span::call_site();
    Ok(quote_spanned! {span=>
        #(#attrs)*
        #[test]
        #vis fn #name() {
            fn __sandbox_test_body() #output #body
            #krate::harness::run_test(
                &#krate::harness::TestOptions {
                    hostname: #hostname,
                    network: #network,
                    timeout: #timeout,
                    env: &[#(#env),*],
                    rootfs: #rootfs,
                    sys: #sys,
                    privileged: #privileged,
                    mounts: &[#(#mounts),*],
                    memory: #memory,
                    pids: #pids,
                    writable_size: #writable_size,
                    cpus: #cpus,
                    requires: &[#(#requires),*],
                    should_panic: #should_panic,
                },
                __sandbox_test_body,
            )
        }
    })
}

/// The text of `#[should_panic(expected = "…")]` or `#[should_panic = "…"]`; `None` for a bare
/// `#[should_panic]`.
fn should_panic_expected(attr: &syn::Attribute) -> syn::Result<Option<LitStr>> {
    match &attr.meta {
        syn::Meta::Path(_) => Ok(None),
        syn::Meta::NameValue(nv) => match &nv.value {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(text), .. }) => Ok(Some(text.clone())),
            other => Err(syn::Error::new(other.span(), "#[should_panic = …] takes a string")),
        },
        syn::Meta::List(_) => {
            let mut expected = None;
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("expected") {
                    expected = Some(meta.value()?.parse::<LitStr>()?);
                    Ok(())
                } else {
                    Err(meta.error("#[should_panic(…)] takes `expected = \"…\"`"))
                }
            })?;
            Ok(expected)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0M"), None);
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn a_relative_rootfs_dir_is_relative_to_the_crate() {
        let mut options = Options::default();
        let parser = syn::meta::parser(|meta| options.parse(meta));
        syn::parse::Parser::parse_str(parser, r#"rootfs_dir = "../tree""#).expect("parse");
        let dir = options.rootfs_dir.map(|t| t.to_string()).unwrap_or_default();
        assert!(dir.contains("CARGO_MANIFEST_DIR") && dir.contains("\"../tree\""), "{dir}");
    }

    // Bug 9: the option lists in the docs omitted mount, memory, pids and cpus.
    #[test]
    fn every_option_is_documented() {
        let crate_docs = include_str!("../../src/lib.rs");
        let docs = crate_docs.split("/// Options:").nth(1).unwrap_or_default();
        let macro_docs = include_str!("lib.rs").split("Options:").nth(1).unwrap_or_default();
        for option in KNOWN.split(", ").map(|o| o.trim_end_matches("(...)")) {
            assert!(docs.contains(&format!("`{option}")), "sandbox_test's docs in lib.rs omit `{option}`");
            assert!(macro_docs.contains(&format!("`{option}")), "the macro's docs omit `{option}`");
        }
    }

    #[test]
    fn versions() {
        assert!(valid_version("3.20") && valid_version("3.20.3") && valid_version("latest-stable"));
        assert!(!valid_version("3") && !valid_version("edge") && !valid_version(""));
    }
}
