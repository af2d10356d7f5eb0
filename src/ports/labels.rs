//! A series' labels as a flat list sorted by name: a tick at 10,000
//! rollouts holds 200,000 series at once, and a `BTreeMap`'s first node
//! alone takes about half a kilobyte per series (BENCHMARKS.md, *Scale*).

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Label names and values, sorted by name, each name once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(Box<str>, Box<str>)>);

impl Labels {
    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// Takes label `name` out, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Box<str>> {
        let i = self.0.binary_search_by(|(k, _)| (**k).cmp(name)).ok()?;
        Some(self.0.remove(i).1)
    }

    /// Name and value of every label, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn from_pairs(mut pairs: Vec<(Box<str>, Box<str>)>) -> Labels {
        // Stable: of a name given twice, the last value stays (as a map's insert).
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.reverse();
        pairs.dedup_by(|a, b| a.0 == b.0);
        pairs.reverse();
        pairs.shrink_to_fit();
        Labels(pairs)
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Labels {
        Labels::from_pairs(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    pairs.push((k.into_boxed_str(), v.into_boxed_str()));
                }
                Ok(Labels::from_pairs(pairs))
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_found_by_name_whatever_order_they_came_in() {
        let labels: Labels = [("version", "v2"), ("le", "0.25"), ("service", "a")]
            .into_iter()
            .collect();
        assert_eq!(labels.get("le"), Some("0.25"));
        assert_eq!(labels.get("service"), Some("a"));
        assert_eq!(labels.get("version"), Some("v2"));
        assert_eq!(labels.get("zone"), None);
        let names: Vec<&str> = labels.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["le", "service", "version"]);
        let mut labels = labels;
        assert_eq!(labels.remove("service").as_deref(), Some("a"));
        assert_eq!(labels.remove("service"), None);
        assert_eq!(labels.get("version"), Some("v2"));
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn a_name_given_twice_keeps_its_last_value_as_a_map_would() {
        let labels: Labels = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels.get("a"), Some("3"));
        let json: Labels = serde_json::from_str(r#"{"a":"1","b":"2","a":"3"}"#).expect("json");
        assert_eq!(json, labels);
    }

    #[test]
    fn labels_read_and_write_as_a_json_object() {
        let labels: Labels = serde_json::from_str(r#"{"version":"v1","le":"+Inf"}"#).expect("json");
        assert_eq!(labels.get("le"), Some("+Inf"));
        assert_eq!(
            serde_json::to_string(&labels).expect("json"),
            r#"{"le":"+Inf","version":"v1"}"#
        );
    }
}
