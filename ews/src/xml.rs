//! XML both ways: [`Xml`] writes elements with quick-xml, which escapes every
//! text and attribute value; the read side walks a roxmltree document by
//! namespace and local name. The SOAP envelope and the EWS namespaces live
//! here, shared by the client and the test suite's simulator.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
pub use roxmltree;
use roxmltree::Node;

pub const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
pub const MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
pub const ERRORS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// An XML document being written. Names carry their prefix (`t:`, `m:`,
/// `soap:`); values are escaped by the writer, never pasted in.
pub struct Xml {
    w: Writer<Vec<u8>>,
}

impl Default for Xml {
    fn default() -> Self {
        Xml::new()
    }
}

impl Xml {
    pub fn new() -> Xml {
        let mut w = Writer::new(Vec::with_capacity(1024));
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
            .expect("writing to memory");
        Xml { w }
    }

    fn ev(&mut self, e: Event<'_>) -> &mut Xml {
        self.w.write_event(e).expect("writing to memory");
        self
    }

    /// `<name attrs…>`
    pub fn open(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut Xml {
        let s = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.ev(Event::Start(s))
    }

    /// `</name>`
    pub fn close(&mut self, name: &str) -> &mut Xml {
        self.ev(Event::End(BytesEnd::new(name)))
    }

    /// `<name attrs…/>`
    pub fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> &mut Xml {
        let s = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.ev(Event::Empty(s))
    }

    /// `<name>text</name>`, the text escaped.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Xml {
        self.open(name, &[]);
        self.ev(Event::Text(BytesText::new(text)));
        self.close(name)
    }

    /// `<name attrs…>text</name>`, the text escaped.
    pub fn text_with(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) -> &mut Xml {
        self.open(name, attrs);
        self.ev(Event::Text(BytesText::new(text)));
        self.close(name)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_inner()
    }

    /// Opens `soap:Envelope` with the EWS namespaces declared.
    pub fn envelope(&mut self) -> &mut Xml {
        self.open(
            "soap:Envelope",
            &[
                ("xmlns:soap", SOAP),
                ("xmlns:t", TYPES),
                ("xmlns:m", MESSAGES),
            ],
        )
    }
}

/// The first child element of `node` named `name` in namespace `ns`.
pub fn child<'a, 'i>(node: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is(*c, ns, name))
}

/// Every child element of `node` named `name` in namespace `ns`.
pub fn children<'a, 'i>(
    node: Node<'a, 'i>,
    ns: &'static str,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(move |c| is(*c, ns, name))
}

/// Child elements, whatever their name.
pub fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|c| c.is_element())
}

/// Whether `node` is the element `name` in namespace `ns`.
pub fn is(node: Node<'_, '_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

/// The text of the child `name` (namespace `ns`), trimmed.
pub fn child_text<'a>(node: Node<'a, '_>, ns: &str, name: &str) -> Option<&'a str> {
    child(node, ns, name).map(|c| c.text().unwrap_or("").trim())
}

/// The element at `path` below `node`, each step in namespace `ns`.
pub fn descend<'a, 'i>(node: Node<'a, 'i>, steps: &[(&str, &str)]) -> Option<Node<'a, 'i>> {
    let mut n = node;
    for (ns, name) in steps {
        n = child(n, ns, name)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_read_back_intact() {
        let nasty = r#"a<b>&"c'</t:X><t:Y>"#;
        let mut x = Xml::new();
        x.envelope()
            .open("soap:Body", &[])
            .text_with("t:Value", &[("Name", nasty)], nasty)
            .close("soap:Body")
            .close("soap:Envelope");
        let bytes = x.into_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("<t:Y>"), "{text}");
        let doc = roxmltree::Document::parse(&text).unwrap();
        let v = descend(doc.root_element(), &[(SOAP, "Body"), (TYPES, "Value")]).unwrap();
        assert_eq!(v.text(), Some(nasty));
        assert_eq!(v.attribute("Name"), Some(nasty));
    }
}
