"""organisation, devices, programmes, channels

Townships, sites, groups (with links to sites, devices and members) and members from the organisation
department; devices with their enrolment state, secrets stored as hashes, and dated radio assignments;
programmes and their items; channels with their last manifest; the retained MQTT messages the broker must
hold; and the audit log. Timestamps are naive UTC, as in 0001.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:04:14.311019
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('channels',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('language', sa.String(length=35), nullable=False),
    sa.Column('groups', sa.JSON(), nullable=False),
    sa.Column('manifest_version', sa.Integer(), nullable=False),
    sa.Column('manifest', sa.LargeBinary(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('programmes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('slots', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('supersedes_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('published_at', sa.DateTime(), nullable=True),
    sa.Column('published_by', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['supersedes_id'], ['programmes.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code', 'version')
    )
    with op.batch_alter_table('programmes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_programmes_state'), ['state'], unique=False)

    op.create_table('retained_messages',
    sa.Column('topic', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('sent_version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('topic')
    )
    op.create_table('townships',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    op.create_table('groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('township_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['township_id'], ['townships.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_table('sites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('township_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['township_id'], ['townships.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sites_township_id'), ['township_id'], unique=False)

    op.create_table('devices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=35), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('enrol_code_sha256', sa.String(length=64), nullable=True),
    sa.Column('enrol_code_expires_at', sa.DateTime(), nullable=True),
    sa.Column('mqtt_password_hash', sa.String(length=255), nullable=True),
    sa.Column('http_token_sha256', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=64), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('enrol_code_sha256'),
    sa.UniqueConstraint('http_token_sha256'),
    sa.UniqueConstraint('uid')
    )
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devices_channel'), ['channel'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_site_id'), ['site_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_state'), ['state'], unique=False)

    op.create_table('members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_no', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('branch', sa.String(length=100), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('card_token', sa.String(length=128), nullable=True),
    sa.Column('joined_on', sa.Date(), nullable=True),
    sa.Column('left_on', sa.Date(), nullable=True),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('card_token'),
    sa.UniqueConstraint('member_no')
    )
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_members_site_id'), ['site_id'], unique=False)

    op.create_table('programme_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('lesson_id', sa.Integer(), nullable=False),
    sa.Column('mandatory', sa.Boolean(), nullable=False),
    sa.Column('groups', sa.JSON(), nullable=False),
    sa.Column('variant_lesson_ids', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['lesson_id'], ['lessons.id'], ),
    sa.ForeignKeyConstraint(['programme_id'], ['programmes.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('programme_id', 'position')
    )
    with op.batch_alter_table('programme_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_programme_items_programme_id'), ['programme_id'], unique=False)

    op.create_table('device_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('from_date', sa.Date(), nullable=False),
    sa.Column('until_date', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('device_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_assignments_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_device_assignments_member_id'), ['member_id'], unique=False)

    op.create_table('group_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=True),
    sa.Column('device_id', sa.Integer(), nullable=True),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['group_id'], ['groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('group_id', 'site_id', 'device_id', 'member_id')
    )
    with op.batch_alter_table('group_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_group_links_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_group_links_group_id'), ['group_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_group_links_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_group_links_site_id'), ['site_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('group_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_group_links_site_id'))
        batch_op.drop_index(batch_op.f('ix_group_links_member_id'))
        batch_op.drop_index(batch_op.f('ix_group_links_group_id'))
        batch_op.drop_index(batch_op.f('ix_group_links_device_id'))

    op.drop_table('group_links')
    with op.batch_alter_table('device_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_assignments_member_id'))
        batch_op.drop_index(batch_op.f('ix_device_assignments_device_id'))

    op.drop_table('device_assignments')
    with op.batch_alter_table('programme_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_programme_items_programme_id'))

    op.drop_table('programme_items')
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_members_site_id'))

    op.drop_table('members')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_state'))
        batch_op.drop_index(batch_op.f('ix_devices_site_id'))
        batch_op.drop_index(batch_op.f('ix_devices_channel'))

    op.drop_table('devices')
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sites_township_id'))

    op.drop_table('sites')
    op.drop_table('groups')
    op.drop_table('townships')
    op.drop_table('retained_messages')
    with op.batch_alter_table('programmes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_programmes_state'))

    op.drop_table('programmes')
    op.drop_table('channels')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
