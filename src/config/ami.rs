//! `ami.yaml`: the AMI every node boots, pinned in the cluster directory and committed
//! beside cluster.yaml. A template parameter of type
//! `AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>` is resolved again by CloudFormation
//! on every stack update ("CloudFormation always fetches the latest values from
//! Parameter Store when it updates stacks", even with UsePreviousValue — AWS
//! CloudFormation User Guide, "Systems Manager parameter types"), so an unpinned
//! cluster rolls every node on the day a new image is published. With a pin the
//! templates carry a plain image id, and only an edit of this file (or of `amiId` in
//! cluster.yaml, which overrides it) changes it.
//!
//! Pure: parsing and formatting. `kube-aws up` and `--refresh-ami` resolve the image and
//! write the file (src/cli/ami.rs).

use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

pub const FILE: &str = "ami.yaml";

static AMI: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$").unwrap_or_else(|_| unreachable!())
});

/// Whether `s` has the form of an AMI id.
pub fn is_ami_id(s: &str) -> bool {
    AMI.is_match(s)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AmiPin {
    /// AMIs are regional: a pin made in one region is meaningless in another.
    pub region: String,
    pub image_id: String,
    /// Where the id was resolved from: the public SSM parameter's name.
    pub source: String,
}

impl AmiPin {
    /// Parses the file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<AmiPin, String> {
        let pin: AmiPin = serde_yaml_ng::from_str(text).map_err(|e| {
            format!(
                "{file}: {e}\n  fix: restore the file from git, or delete it and run `kube-aws update --refresh-ami`"
            )
        })?;
        if !is_ami_id(&pin.image_id) {
            return Err(format!(
                "{file}: imageId `{}` is not an AMI ID\n  fix: use ami- followed by 8 or 17 hex digits, or run `kube-aws update --refresh-ami`",
                pin.image_id
            ));
        }
        Ok(pin)
    }

    /// The pinned id for a cluster in `region`.
    pub fn for_region(&self, region: &str, file: &str) -> Result<&str, String> {
        if self.region != region {
            return Err(format!(
                "{file}: the AMI was pinned in {}, but cluster.yaml's region is {region}\n  fix: run `kube-aws update --refresh-ami` (or `up --refresh-ami`) to pin an image of {region}",
                self.region
            ));
        }
        Ok(&self.image_id)
    }

    /// The file's text: a header that says what the file is, then the fields.
    pub fn to_yaml(&self) -> String {
        format!(
            "# The AMI every node of this cluster boots, pinned by kube-aws. Commit it with\n\
             # cluster.yaml. Changing it rolls every node, and `kube-aws diff` names them.\n\
             # Refresh to the newest image: `kube-aws update --refresh-ami`.\n\
             # `amiId` in cluster.yaml, when set, overrides this file.\n\
             region: {}\nimageId: {}\nsource: {}\n",
            self.region, self.image_id, self.source
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks() {
        let p = AmiPin {
            region: "us-west-2".into(),
            image_id: "ami-0123456789abcdef0".into(),
            source: "/aws/service/x".into(),
        };
        assert_eq!(AmiPin::parse(&p.to_yaml(), "ami.yaml"), Ok(p.clone()));
        assert_eq!(p.for_region("us-west-2", "f"), Ok("ami-0123456789abcdef0"));
        let e = p.for_region("eu-west-1", "ami.yaml").unwrap_err();
        assert!(
            e.contains("pinned in us-west-2") && e.contains("--refresh-ami"),
            "{e}"
        );
        let e = AmiPin::parse("region: r\nimageId: ami-xyz\nsource: s\n", "ami.yaml").unwrap_err();
        assert!(e.contains("ami.yaml: imageId `ami-xyz`"), "{e}");
        let e = AmiPin::parse("region: r\nimage: ami-12345678\n", "ami.yaml").unwrap_err();
        assert!(e.starts_with("ami.yaml:"), "{e}");
    }
}
