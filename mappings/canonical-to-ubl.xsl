<?xml version="1.0" encoding="UTF-8"?>
<!--
  Canonical invoice (schemas/canonical-invoice.xsd) → UBL 2.1 Invoice or CreditNote,
  Chorus Pro interface FSO1100A (IN_DP_E1_UBL_INVOICE).

  A credit note (type 381) is written as a UBL CreditNote: EN 16931 allows 381 only
  there (BR-CL-01). $credit-note-document = 'Invoice' writes it as an Invoice of type
  381, which Chorus Pro's older UBL profile read but EN 16931 refuses: the gateway
  never asks for it (gateway/mapping/__init__.py says why).

  Element order follows the UBL 2.1 XSD sequences; an optional canonical element that
  is absent produces no UBL element. Amounts arrive computed and rounded: this
  stylesheet copies them and does no arithmetic.

  Where Chorus Pro reads its data (../shared/DOMAIN.md §3): SIRETs as
  PartyIdentification/ID and PartyLegalEntity/CompanyID with schemeID 0009, service
  code in BuyerReference (BT-10), commitment number in OrderReference/ID (BT-13),
  cadre de facturation in ProfileID (BT-23).
-->
<xsl:stylesheet version="3.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:c="urn:chorus-gateway:canonical-invoice:1"
    xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
    xpath-default-namespace="urn:chorus-gateway:canonical-invoice:1"
    exclude-result-prefixes="xs c">

  <!-- Not indented: the whitespace between elements was a quarter of a document's bytes
       and half of its nodes, which every parser and the Schematron then hold
       (benchmarks/bench_big_invoice.py); an XML viewer or `xmllint` indents it. -->
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>

  <!-- The Chorus Pro rendering stylesheet of the interface (E1 flows carry it). -->
  <xsl:param name="interface-code" as="xs:string" select="'FSO1100A'"/>
  <!-- EN 16931 core specification identifier (BT-24). -->
  <xsl:param name="customization-id" as="xs:string" select="'urn:cen.eu:en16931:2017'"/>

  <!-- 'CreditNote' (EN 16931) or 'Invoice' (type 381 in an Invoice: refused by EN 16931). -->
  <xsl:param name="credit-note-document" as="xs:string" select="'CreditNote'"/>

  <xsl:variable name="currency" select="/Invoice/CurrencyCode"/>
  <xsl:variable name="document" as="xs:string"
      select="if (/Invoice/InvoiceTypeCode = '381' and $credit-note-document = 'CreditNote') then 'CreditNote' else 'Invoice'"/>
  <xsl:variable name="document-namespace" as="xs:string"
      select="concat('urn:oasis:names:specification:ubl:schema:xsd:', $document, '-2')"/>

  <xsl:template match="/">
    <xsl:processing-instruction name="xml-stylesheet"
        select="concat('type=&quot;text/xsl&quot; href=&quot;', $interface-code, '.xsl&quot;')"/>
    <xsl:apply-templates select="Invoice"/>
  </xsl:template>

  <xsl:template match="Invoice">
    <xsl:element name="{$document}" namespace="{$document-namespace}">
      <!-- Declared once on the root: otherwise each child created in another template
           repeats both declarations, which made a UBL line twice as long. -->
      <xsl:namespace name="cac" select="'urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2'"/>
      <xsl:namespace name="cbc" select="'urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2'"/>
      <cbc:CustomizationID><xsl:value-of select="$customization-id"/></cbc:CustomizationID>
      <xsl:apply-templates select="BusinessProcessType"/>
      <cbc:ID><xsl:value-of select="InvoiceNumber"/></cbc:ID>
      <cbc:IssueDate><xsl:value-of select="IssueDate"/></cbc:IssueDate>
      <xsl:if test="$document = 'Invoice'"><xsl:apply-templates select="PaymentDueDate"/></xsl:if>
      <xsl:element name="cbc:{$document}TypeCode"><xsl:value-of select="InvoiceTypeCode"/></xsl:element>
      <cbc:DocumentCurrencyCode><xsl:value-of select="CurrencyCode"/></cbc:DocumentCurrencyCode>
      <xsl:apply-templates select="BuyerReference"/>
      <xsl:apply-templates select="PurchaseOrderReference"/>
      <xsl:apply-templates select="PrecedingInvoiceReference"/>
      <xsl:apply-templates select="ContractReference"/>
      <xsl:apply-templates select="AdditionalSupportingDocument"/>
      <cac:AccountingSupplierParty>
        <xsl:apply-templates select="Seller"/>
      </cac:AccountingSupplierParty>
      <cac:AccountingCustomerParty>
        <xsl:apply-templates select="Buyer"/>
      </cac:AccountingCustomerParty>
      <xsl:if test="ActualDeliveryDate or DeliverToCountryCode">
        <cac:Delivery>
          <xsl:for-each select="ActualDeliveryDate"><cbc:ActualDeliveryDate><xsl:value-of select="."/></cbc:ActualDeliveryDate></xsl:for-each>
          <xsl:for-each select="DeliverToCountryCode">
            <cac:DeliveryLocation><cac:Address><cac:Country><cbc:IdentificationCode><xsl:value-of select="."/></cbc:IdentificationCode></cac:Country></cac:Address></cac:DeliveryLocation>
          </xsl:for-each>
        </cac:Delivery>
      </xsl:if>
      <xsl:apply-templates select="PaymentInstructions"/>
      <!-- A UBL CreditNote has no DueDate: its BT-9 lives in PaymentMeans, and Chorus Pro
           takes no payment means on a credit note (CHORUS-CREDIT-NOTE-PAYMENT-MEANS). SAP
           gives every credit memo with payment terms a due date: it is kept as the
           payment terms' text (BT-20) rather than lost or blocking the credit note. -->
      <xsl:if test="$document = 'CreditNote' and not(PaymentInstructions)">
        <xsl:for-each select="PaymentDueDate">
          <cac:PaymentTerms><cbc:Note>Date d'échéance : <xsl:value-of select="."/></cbc:Note></cac:PaymentTerms>
        </xsl:for-each>
      </xsl:if>
      <cac:TaxTotal>
        <cbc:TaxAmount currencyID="{$currency}"><xsl:value-of select="DocumentTotals/InvoiceTotalVatAmount"/></cbc:TaxAmount>
        <xsl:apply-templates select="VatBreakdown"/>
      </cac:TaxTotal>
      <xsl:apply-templates select="DocumentTotals"/>
      <xsl:apply-templates select="InvoiceLine"/>
    </xsl:element>
  </xsl:template>

  <xsl:template match="BusinessProcessType">
    <cbc:ProfileID><xsl:value-of select="."/></cbc:ProfileID>
  </xsl:template>

  <xsl:template match="PaymentDueDate">
    <cbc:DueDate><xsl:value-of select="."/></cbc:DueDate>
  </xsl:template>

  <xsl:template match="BuyerReference">
    <cbc:BuyerReference><xsl:value-of select="."/></cbc:BuyerReference>
  </xsl:template>

  <xsl:template match="PurchaseOrderReference">
    <cac:OrderReference><cbc:ID><xsl:value-of select="."/></cbc:ID></cac:OrderReference>
  </xsl:template>

  <xsl:template match="PrecedingInvoiceReference">
    <cac:BillingReference>
      <cac:InvoiceDocumentReference>
        <cbc:ID><xsl:value-of select="PrecedingInvoiceNumber"/></cbc:ID>
        <xsl:for-each select="PrecedingInvoiceIssueDate"><cbc:IssueDate><xsl:value-of select="."/></cbc:IssueDate></xsl:for-each>
      </cac:InvoiceDocumentReference>
    </cac:BillingReference>
  </xsl:template>

  <xsl:template match="ContractReference">
    <cac:ContractDocumentReference><cbc:ID><xsl:value-of select="."/></cbc:ID></cac:ContractDocumentReference>
  </xsl:template>

  <xsl:template match="AdditionalSupportingDocument">
    <cac:AdditionalDocumentReference>
      <cbc:ID><xsl:value-of select="SupportingDocumentReference"/></cbc:ID>
      <xsl:for-each select="SupportingDocumentDescription"><cbc:DocumentDescription><xsl:value-of select="."/></cbc:DocumentDescription></xsl:for-each>
      <cac:Attachment>
        <cbc:EmbeddedDocumentBinaryObject mimeCode="{AttachedDocument/@mimeCode}" filename="{AttachedDocument/@filename}"><xsl:value-of select="AttachedDocument"/></cbc:EmbeddedDocumentBinaryObject>
      </cac:Attachment>
    </cac:AdditionalDocumentReference>
  </xsl:template>

  <xsl:template match="Seller | Buyer">
    <cac:Party>
      <cac:PartyIdentification>
        <cbc:ID schemeID="0009"><xsl:value-of select="Siret"/></cbc:ID>
      </cac:PartyIdentification>
      <xsl:apply-templates select="PostalAddress"/>
      <xsl:if test="VatIdentifier">
        <cac:PartyTaxScheme>
          <cbc:CompanyID><xsl:value-of select="VatIdentifier"/></cbc:CompanyID>
          <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
        </cac:PartyTaxScheme>
      </xsl:if>
      <cac:PartyLegalEntity>
        <cbc:RegistrationName><xsl:value-of select="Name"/></cbc:RegistrationName>
        <cbc:CompanyID schemeID="0009"><xsl:value-of select="Siret"/></cbc:CompanyID>
      </cac:PartyLegalEntity>
    </cac:Party>
  </xsl:template>

  <xsl:template match="PostalAddress">
    <cac:PostalAddress>
      <xsl:for-each select="AddressLine1"><cbc:StreetName><xsl:value-of select="."/></cbc:StreetName></xsl:for-each>
      <xsl:for-each select="AddressLine2"><cbc:AdditionalStreetName><xsl:value-of select="."/></cbc:AdditionalStreetName></xsl:for-each>
      <xsl:for-each select="City"><cbc:CityName><xsl:value-of select="."/></cbc:CityName></xsl:for-each>
      <xsl:for-each select="PostCode"><cbc:PostalZone><xsl:value-of select="."/></cbc:PostalZone></xsl:for-each>
      <cac:Country><cbc:IdentificationCode><xsl:value-of select="CountryCode"/></cbc:IdentificationCode></cac:Country>
    </cac:PostalAddress>
  </xsl:template>

  <xsl:template match="PaymentInstructions">
    <cac:PaymentMeans>
      <cbc:PaymentMeansCode><xsl:value-of select="PaymentMeansTypeCode"/></cbc:PaymentMeansCode>
      <xsl:if test="$document = 'CreditNote'">
        <xsl:for-each select="../PaymentDueDate"><cbc:PaymentDueDate><xsl:value-of select="."/></cbc:PaymentDueDate></xsl:for-each>
      </xsl:if>
      <xsl:for-each select="PaymentAccountIdentifier">
        <cac:PayeeFinancialAccount><cbc:ID><xsl:value-of select="."/></cbc:ID></cac:PayeeFinancialAccount>
      </xsl:for-each>
    </cac:PaymentMeans>
  </xsl:template>

  <!-- EN 16931: category O carries no rate (BR-O-05, BR-O-09); the others always do. -->
  <xsl:template name="tax-category">
    <xsl:param name="code" as="xs:string"/>
    <xsl:param name="rate" as="xs:string?"/>
    <xsl:param name="exemption" as="element()*" select="()"/>
    <cbc:ID><xsl:value-of select="$code"/></cbc:ID>
    <xsl:if test="$code ne 'O'"><cbc:Percent><xsl:value-of select="$rate"/></cbc:Percent></xsl:if>
    <xsl:for-each select="$exemption[self::VatExemptionReasonCode]"><cbc:TaxExemptionReasonCode><xsl:value-of select="."/></cbc:TaxExemptionReasonCode></xsl:for-each>
    <xsl:for-each select="$exemption[self::VatExemptionReasonText]"><cbc:TaxExemptionReason><xsl:value-of select="."/></cbc:TaxExemptionReason></xsl:for-each>
    <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>
  </xsl:template>

  <xsl:template match="VatBreakdown">
    <cac:TaxSubtotal>
      <cbc:TaxableAmount currencyID="{$currency}"><xsl:value-of select="VatCategoryTaxableAmount"/></cbc:TaxableAmount>
      <cbc:TaxAmount currencyID="{$currency}"><xsl:value-of select="VatCategoryTaxAmount"/></cbc:TaxAmount>
      <cac:TaxCategory>
        <xsl:call-template name="tax-category">
          <xsl:with-param name="code" select="string(VatCategoryCode)"/>
          <xsl:with-param name="rate" select="string(VatCategoryRate)"/>
          <xsl:with-param name="exemption" select="VatExemptionReasonText | VatExemptionReasonCode"/>
        </xsl:call-template>
      </cac:TaxCategory>
    </cac:TaxSubtotal>
  </xsl:template>

  <xsl:template match="DocumentTotals">
    <cac:LegalMonetaryTotal>
      <cbc:LineExtensionAmount currencyID="{$currency}"><xsl:value-of select="SumOfInvoiceLineNetAmount"/></cbc:LineExtensionAmount>
      <cbc:TaxExclusiveAmount currencyID="{$currency}"><xsl:value-of select="InvoiceTotalAmountWithoutVat"/></cbc:TaxExclusiveAmount>
      <cbc:TaxInclusiveAmount currencyID="{$currency}"><xsl:value-of select="InvoiceTotalAmountWithVat"/></cbc:TaxInclusiveAmount>
      <cbc:PayableAmount currencyID="{$currency}"><xsl:value-of select="AmountDueForPayment"/></cbc:PayableAmount>
    </cac:LegalMonetaryTotal>
  </xsl:template>

  <xsl:template match="InvoiceLine">
    <xsl:variable name="quantity" select="if ($document = 'CreditNote') then 'CreditedQuantity' else 'InvoicedQuantity'"/>
    <xsl:element name="cac:{$document}Line">
      <cbc:ID><xsl:value-of select="InvoiceLineIdentifier"/></cbc:ID>
      <xsl:element name="cbc:{$quantity}">
        <xsl:attribute name="unitCode" select="InvoicedQuantityUnitOfMeasureCode"/>
        <xsl:value-of select="InvoicedQuantity"/>
      </xsl:element>
      <cbc:LineExtensionAmount currencyID="{$currency}"><xsl:value-of select="InvoiceLineNetAmount"/></cbc:LineExtensionAmount>
      <cac:Item>
        <cbc:Name><xsl:value-of select="ItemName"/></cbc:Name>
        <cac:ClassifiedTaxCategory>
          <xsl:call-template name="tax-category">
            <xsl:with-param name="code" select="string(InvoicedItemVatCategoryCode)"/>
            <xsl:with-param name="rate" select="string(InvoicedItemVatRate)"/>
          </xsl:call-template>
        </cac:ClassifiedTaxCategory>
      </cac:Item>
      <cac:Price>
        <cbc:PriceAmount currencyID="{$currency}"><xsl:value-of select="ItemNetPrice"/></cbc:PriceAmount>
      </cac:Price>
    </xsl:element>
  </xsl:template>
</xsl:stylesheet>
