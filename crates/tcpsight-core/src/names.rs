//! Interface names kept by index: a capture has one or a few, so a frame, a connection
//! or a batch carries a small number instead of the name.

/// The index of `name` in `names`, appended if new while `names` holds fewer than
/// `max`; None once full (the caller's "unknown").
pub fn index_of<T>(names: &mut Vec<T>, name: &str, max: usize) -> Option<usize>
where
    T: AsRef<str> + for<'a> From<&'a str>,
{
    if let Some(i) = names.iter().position(|n| n.as_ref() == name) {
        return Some(i);
    }
    (names.len() < max).then(|| {
        names.push(name.into());
        names.len() - 1
    })
}

#[cfg(test)]
mod tests {
    use super::index_of;

    #[test]
    fn names_get_one_index_each_until_full() {
        let mut names: Vec<Box<str>> = Vec::new();
        assert_eq!(index_of(&mut names, "eth0", 2), Some(0));
        assert_eq!(index_of(&mut names, "br0", 2), Some(1));
        assert_eq!(index_of(&mut names, "eth0", 2), Some(0));
        assert_eq!(index_of(&mut names, "veth1", 2), None);
        assert_eq!(names.len(), 2);
    }
}
