-- Bank payout accounts say whose account the card is (issue 15, "Bad
-- input"): Alipay's 转账到银行卡 sends `bankcard_ext_info.account_type`, and
-- a company's account (对公) also needs the bank and the branch, which the
-- bank's clearing finds it by. None of these is a credential: a company's
-- registered name and a branch are public, so they are plain columns.
--
-- SQLite cannot add a table constraint to an existing table, and a rebuild
-- would have to carry the withdrawals' foreign key through it; a CHECK on an
-- added column may name the row's other columns and is tested against the
-- existing rows when it is added, so the constraint rides on the last
-- column added, after the existing bank accounts are filled in.

-- 'personal' (对私, account_type "2") or 'company' (对公, "1"); null unless
-- the account is a bank card.
alter table payout_accounts add column account_type text;

-- Every bank account added before this was personal: nothing else could be
-- sent.
update payout_accounts set account_type = 'personal' where channel = 'bank';

-- A company account's holder, as registered ('杭州某某科技有限公司'): the
-- payee's name on the transfer, in place of the distributor's own name.
alter table payout_accounts add column company_name text;

-- The bank holding a company account (`inst_name`), by its canonical name
-- from src/domain/banks.rs ('招商银行').
alter table payout_accounts add column inst_name text;

-- The branch's 联行号 (CNAPS number, `bank_code`): 12 digits.
alter table payout_accounts add column bank_code text;

-- Or the branch by place and name (`inst_province`, `inst_city`,
-- `inst_branch_name`), all three or none.
alter table payout_accounts add column inst_province text;

alter table payout_accounts add column inst_city text;

alter table payout_accounts add column inst_branch_name text
    constraint payout_accounts_bank_account check (
        -- Bank accounts, and only they, say whose account the card is.
        (channel = 'bank') = (account_type is not null)
        and coalesce(account_type, 'personal') in ('personal', 'company')
        -- A branch's place is given whole or not at all.
        and (inst_province is null) = (inst_city is null)
        and (inst_city is null) = (inst_branch_name is null)
        and (bank_code is null or (length(bank_code) = 12 and bank_code not glob '*[^0-9]*'))
        -- A company account names its holder, its bank and its branch (by
        -- 联行号, by place, or both); any other account none of them.
        and case coalesce(account_type, '')
            when 'company' then company_name is not null and inst_name is not null
                and (bank_code is not null or inst_branch_name is not null)
            else company_name is null and inst_name is null and bank_code is null
                and inst_branch_name is null
        end
    );
