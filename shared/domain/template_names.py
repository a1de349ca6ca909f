"""Template names in one place (emails under templates/email/, pages under templates/pages/)."""

# Emails
CONFIRM_EMAIL = "confirm"
WELCOME_EMAIL = "welcome"

# Pages
SIGNUP_PAGE = "signup"
MESSAGE_PAGE = "message"  # a titled message: thanks, confirmed, errors
UNSUBSCRIBE_PAGE = "unsubscribe"
PREFERENCES_PAGE = "preferences"
