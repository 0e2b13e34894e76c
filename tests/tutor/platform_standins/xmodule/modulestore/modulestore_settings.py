"""Stand-in for xmodule.modulestore.modulestore_settings."""


def update_module_store_settings(module_store_setting, doc_store_settings=None, **kwargs):
    for store in module_store_setting["default"]["OPTIONS"]["stores"]:
        store["DOC_STORE_CONFIG"] = doc_store_settings
