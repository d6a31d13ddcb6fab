"""Every domain's SQLAlchemy models, imported so the mapper and Alembic see every table on ``Base.metadata``.

Import a model from its domain (``from server.devices.models import Device``); import this module only to load
them all.
"""

from server import audit  # noqa: F401
from server.accounts import models as accounts_models  # noqa: F401
from server.agent_releases import models as agent_releases_models  # noqa: F401
from server.attendance import models as attendance_models  # noqa: F401
from server.devices import models as devices_models  # noqa: F401
from server.events import models as events_models  # noqa: F401
from server.health import models as health_models  # noqa: F401
from server.jobs import models as jobs_models  # noqa: F401
from server.lessons import models as lessons_models  # noqa: F401
from server.messaging import models as messaging_models  # noqa: F401
from server.org import models as org_models  # noqa: F401
from server.programmes import models as programmes_models  # noqa: F401
from server.training import models as training_models  # noqa: F401
