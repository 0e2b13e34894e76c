"""
Stand-in for edx-platform's `openedx.core.djangoapps.external_user_ids` app (label
"external_user_ids"): the ExternalIdType and ExternalId models the peer's external_id sink reads.
"""
