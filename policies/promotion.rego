# Custom promotion rules. Every message added to `deny` blocks the promotion and is shown
# in the PR's gate table. The input is described in README.md (Rego policies).
package baton

import rego.v1

deny contains msg if {
	input.environment == "prod"
	not input.tag
	msg := "prod only receives images published under a release tag"
}

deny contains msg if {
	input.environment == "prod"
	input.weekday in {"Sat", "Sun"}
	msg := "no prod promotions at the weekend"
}
