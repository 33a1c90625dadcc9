from tortoise import migrations
from tortoise.migrations import operations as ops
from models.accounts import UserRole, UserTier
from models.courses import CourseLevel, CourseStatus, MemberRole
from models.generation import JobStatus
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('email', fields.CharField(unique=True, max_length=254)),
                ('password_hash', fields.CharField(max_length=255)),
                ('display_name', fields.CharField(max_length=100)),
                ('tier', fields.CharEnumField(default=UserTier.FREE, description='FREE: free\nSTANDARD: standard\nPREMIUM: premium', enum_type=UserTier, max_length=16)),
                ('role', fields.CharEnumField(default=UserRole.USER, description='USER: user\nADMIN: admin', enum_type=UserRole, max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'users', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AuthSession',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_reason', fields.CharField(null=True, max_length=32)),
            ],
            options={'table': 'auth_sessions', 'app': 'models', 'indexes': [Index(fields=['user_id'], name='ix_auth_sessions_user')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Course',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='courses', on_delete=OnDelete.CASCADE)),
                ('title', fields.CharField(max_length=200)),
                ('description', fields.TextField(default='', unique=False)),
                ('level', fields.CharEnumField(default=CourseLevel.BEGINNER, description='BEGINNER: beginner\nINTERMEDIATE: intermediate\nADVANCED: advanced', enum_type=CourseLevel, max_length=16)),
                ('language', fields.CharField(default='en', max_length=16)),
                ('status', fields.CharEnumField(default=CourseStatus.DRAFT, description='DRAFT: draft\nGENERATING: generating\nREADY: ready\nFAILED: failed\nARCHIVED: archived', enum_type=CourseStatus, max_length=16)),
                ('version', fields.IntField(default=1)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'courses', 'app': 'models', 'indexes': [Index(fields=['owner_id', 'created_at', 'id'], name='ix_courses_owner_created'), Index(fields=['owner_id', 'updated_at', 'id'], name='ix_courses_owner_updated'), Index(fields=['owner_id', 'title', 'id'], name='ix_courses_owner_title')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CourseMember',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('course', fields.ForeignKeyField('models.Course', source_field='course_id', db_constraint=True, to_field='id', related_name='members', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharEnumField(default=MemberRole.VIEWER, description='VIEWER: viewer\nEDITOR: editor', enum_type=MemberRole, max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'course_members', 'app': 'models', 'unique_together': (('course', 'user'),), 'indexes': [Index(fields=['user_id', 'course_id'], name='ix_course_members_user')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='GenerationJob',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('course', fields.ForeignKeyField('models.Course', source_field='course_id', db_constraint=True, to_field='id', related_name='generation_jobs', on_delete=OnDelete.CASCADE)),
                ('requester', fields.ForeignKeyField('models.User', source_field='requester_id', db_constraint=True, to_field='id', related_name='generation_jobs', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=JobStatus.QUEUED, description='QUEUED: queued\nRUNNING: running\nSUCCEEDED: succeeded\nFAILED: failed\nCANCELLED: cancelled', enum_type=JobStatus, max_length=16)),
                ('stage', fields.CharField(null=True, max_length=32)),
                ('progress', fields.FloatField(default=0.0)),
                ('attempts', fields.IntField(default=0)),
                ('error_code', fields.CharField(null=True, max_length=64)),
                ('error_message', fields.TextField(null=True, unique=False)),
                ('request', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('models_used', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('tokens_in', fields.IntField(default=0)),
                ('tokens_out', fields.IntField(default=0)),
                ('cost_usd', fields.DecimalField(default=0, max_digits=12, decimal_places=6)),
                ('idempotency_key', fields.CharField(null=True, max_length=128)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'generation_jobs', 'app': 'models', 'unique_together': (('requester', 'idempotency_key'),), 'indexes': [Index(fields=['course_id'], name='ix_generation_jobs_course'), Index(fields=['requester_id', 'created_at'], name='ix_generation_jobs_requester'), Index(fields=['status', 'created_at'], name='ix_generation_jobs_status')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RefreshToken',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.AuthSession', source_field='session_id', db_constraint=True, to_field='id', related_name='refresh_tokens', on_delete=OnDelete.CASCADE)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'refresh_tokens', 'app': 'models', 'indexes': [Index(fields=['session_id'], name='ix_refresh_tokens_session')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Subject',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('course', fields.ForeignKeyField('models.Course', source_field='course_id', db_constraint=True, to_field='id', related_name='subjects', on_delete=OnDelete.CASCADE)),
                ('rank', fields.CharField(max_length=64)),
                ('title', fields.CharField(max_length=200)),
                ('summary', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'subjects', 'app': 'models', 'indexes': [Index(fields=['course_id', 'rank'], name='ix_subjects_course_rank')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Topic',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('subject', fields.ForeignKeyField('models.Subject', source_field='subject_id', db_constraint=True, to_field='id', related_name='topics', on_delete=OnDelete.CASCADE)),
                ('course', fields.ForeignKeyField('models.Course', source_field='course_id', db_constraint=True, to_field='id', related_name='topics', on_delete=OnDelete.CASCADE)),
                ('rank', fields.CharField(max_length=64)),
                ('title', fields.CharField(max_length=200)),
                ('objectives', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('content', fields.TextField(default='', unique=False)),
                ('estimated_minutes', fields.IntField(default=10)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'topics', 'app': 'models', 'indexes': [Index(fields=['subject_id', 'rank'], name='ix_topics_subject_rank'), Index(fields=['course_id'], name='ix_topics_course')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Bookmark',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='bookmarks', on_delete=OnDelete.CASCADE)),
                ('topic', fields.ForeignKeyField('models.Topic', source_field='topic_id', db_constraint=True, to_field='id', related_name='bookmarks', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'bookmarks', 'app': 'models', 'unique_together': (('user', 'topic'),), 'indexes': [Index(fields=['topic_id'], name='ix_bookmarks_topic')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Note',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='notes', on_delete=OnDelete.CASCADE)),
                ('topic', fields.ForeignKeyField('models.Topic', source_field='topic_id', db_constraint=True, to_field='id', related_name='notes', on_delete=OnDelete.CASCADE)),
                ('body', fields.TextField(unique=False)),
                ('version', fields.IntField(default=1)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'notes', 'app': 'models', 'indexes': [Index(fields=['user_id', 'topic_id'], name='ix_notes_user_topic'), Index(fields=['topic_id'], name='ix_notes_topic')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TopicProgress',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='progress', on_delete=OnDelete.CASCADE)),
                ('topic', fields.ForeignKeyField('models.Topic', source_field='topic_id', db_constraint=True, to_field='id', related_name='progress', on_delete=OnDelete.CASCADE)),
                ('completed', fields.BooleanField(default=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('score', fields.IntField(null=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'topic_progress', 'app': 'models', 'unique_together': (('user', 'topic'),), 'indexes': [Index(fields=['topic_id'], name='ix_topic_progress_topic')], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
